"""The studio's LangGraph: state, phases, routing, build_graph() and the compiled graph."""
