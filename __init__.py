"""Creative Studio: a local-first AI creative team built on LangGraph.

The repository root is installed as this package, so code imports absolutely
(``from creative_studio.graph import build_graph``) and never collides with bare
names like ``graph`` or ``api`` when the studio is embedded in another app.
"""

__version__ = "0.1.0"
