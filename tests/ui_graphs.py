"""Small UI-format graphs, written as ComfyUI's frontend saves them, for the conversion tests.

Real node types of the recorded ComfyUI 0.3.64; the checkpoint is the one it has.
"""

from __future__ import annotations

from typing import Any


def node(
    node_id: int,
    kind: str,
    widgets: Any = None,
    inputs: list[tuple[str, str, int | None]] | None = None,
    outputs: list[str] | None = None,
    mode: int = 0,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": node_id,
        "type": kind,
        "mode": mode,
        "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs or []],
        "outputs": [{"name": t, "type": t, "links": []} for t in outputs or []],
    }
    if widgets is not None:
        data["widgets_values"] = widgets
    return data


def sd_graph() -> dict[str, Any]:
    """Checkpoint -> two prompts -> KSampler -> decode -> save, as the UI saves it."""
    nodes = [
        node(1, "CheckpointLoaderSimple", ["tiny-sd15.safetensors"], [], ["MODEL", "CLIP", "VAE"]),
        node(2, "CLIPTextEncode", ["a castle"], [("clip", "CLIP", 2)], ["CONDITIONING"]),
        node(3, "CLIPTextEncode", ["blurry"], [("clip", "CLIP", 3)], ["CONDITIONING"]),
        node(4, "EmptyLatentImage", [512, 512, 1], [], ["LATENT"]),
        node(
            5,
            "KSampler",
            [42, "randomize", 20, 7.5, "euler", "normal", 1],
            [
                ("model", "MODEL", 1),
                ("positive", "CONDITIONING", 4),
                ("negative", "CONDITIONING", 5),
                ("latent_image", "LATENT", 6),
            ],
            ["LATENT"],
        ),
        node(6, "VAEDecode", [], [("samples", "LATENT", 7), ("vae", "VAE", 8)], ["IMAGE"]),
        node(7, "SaveImage", ["studio"], [("images", "IMAGE", 9)], []),
        node(8, "Note", ["a note"]),
    ]
    links = [
        [1, 1, 0, 5, 0, "MODEL"],
        [2, 1, 1, 2, 0, "CLIP"],
        [3, 1, 1, 3, 0, "CLIP"],
        [4, 2, 0, 5, 1, "CONDITIONING"],
        [5, 3, 0, 5, 2, "CONDITIONING"],
        [6, 4, 0, 5, 3, "LATENT"],
        [7, 5, 0, 6, 0, "LATENT"],
        [8, 1, 2, 6, 1, "VAE"],
        [9, 6, 0, 7, 0, "IMAGE"],
    ]
    return {"nodes": nodes, "links": links, "version": 0.4}


def subgraph_graph(*, promoted: list[Any] | None) -> dict[str, Any]:
    """A prompt + latent subgraph (A) holding a nested latent subgraph (B)."""
    sub_b = {
        "id": "sub-b",
        "name": "latent",
        "inputs": [{"id": "b-in", "name": "width", "type": "INT", "linkIds": [1]}],
        "outputs": [{"id": "b-out", "name": "LATENT", "type": "LATENT", "linkIds": [2]}],
        "nodes": [
            {
                "id": 1,
                "type": "EmptyLatentImage",
                "mode": 0,
                "inputs": [
                    {"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 1}
                ],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2]}],
                "widgets_values": [512, 768, 1],
            }
        ],
        "links": [
            {
                "id": 1,
                "origin_id": -10,
                "origin_slot": 0,
                "target_id": 1,
                "target_slot": 0,
                "type": "INT",
            },
            {
                "id": 2,
                "origin_id": 1,
                "origin_slot": 0,
                "target_id": -20,
                "target_slot": 0,
                "type": "LATENT",
            },
        ],
    }
    sub_a = {
        "id": "sub-a",
        "name": "prompt and latent",
        "inputs": [
            {"id": "a1", "name": "clip", "type": "CLIP", "linkIds": [1]},
            {"id": "a2", "name": "text", "type": "STRING", "linkIds": [2]},
            {"id": "a3", "name": "width", "type": "INT", "linkIds": [3]},
        ],
        "outputs": [
            {"id": "a4", "name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [4]},
            {"id": "a5", "name": "LATENT", "type": "LATENT", "linkIds": [5]},
        ],
        "nodes": [
            {
                "id": 1,
                "type": "CLIPTextEncode",
                "mode": 0,
                "inputs": [
                    {"name": "clip", "type": "CLIP", "link": 1},
                    {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 2},
                ],
                "widgets_values": ["the inner text"],
            },
            {
                "id": 2,
                "type": "sub-b",
                "mode": 0,
                "inputs": [
                    {"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 3}
                ],
            },
        ],
        "links": [
            {
                "id": 1,
                "origin_id": -10,
                "origin_slot": 0,
                "target_id": 1,
                "target_slot": 0,
                "type": "CLIP",
            },
            {
                "id": 2,
                "origin_id": -10,
                "origin_slot": 1,
                "target_id": 1,
                "target_slot": 1,
                "type": "STRING",
            },
            {
                "id": 3,
                "origin_id": -10,
                "origin_slot": 2,
                "target_id": 2,
                "target_slot": 0,
                "type": "INT",
            },
            {
                "id": 4,
                "origin_id": 1,
                "origin_slot": 0,
                "target_id": -20,
                "target_slot": 0,
                "type": "CONDITIONING",
            },
            {
                "id": 5,
                "origin_id": 2,
                "origin_slot": 0,
                "target_id": -20,
                "target_slot": 1,
                "type": "LATENT",
            },
        ],
    }
    graph = sd_graph()
    instance = node(20, "sub-a", promoted, [("clip", "CLIP", 40)], ["CONDITIONING", "LATENT"])
    instance["inputs"].append(
        {"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 41}
    )
    graph["nodes"] = [n for n in graph["nodes"] if n["id"] not in (2, 4)]
    graph["nodes"] += [instance, node(21, "PrimitiveNode", [640, "fixed"], [], ["INT"])]
    graph["links"] = [link for link in graph["links"] if link[0] not in (2, 4, 6)] + [
        [40, 1, 1, 20, 0, "CLIP"],
        [41, 21, 0, 20, 2, "INT"],
        [4, 20, 0, 5, 1, "CONDITIONING"],
        [6, 20, 1, 5, 3, "LATENT"],
    ]
    graph["definitions"] = {"subgraphs": [sub_a, sub_b]}
    return graph
