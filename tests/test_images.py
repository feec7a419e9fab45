"""Images in: uploads checked by content, and Pixel starting from them, through the real API
over a socket against the ComfyUI double (which replays /upload/image and image runs the way
the recordings in ../shared/comfyui show)."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from creative_studio.tools.images import MAX_IMAGE_BYTES
from tests.api_server import ApiServer
from tests.comfyui_double import ComfyUIDouble
from tests.fakes import make_provider
from tests.test_api import collect_until_done


def image_bytes(width: int, height: int, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, kind)
    return buffer.getvalue()


@pytest.fixture
def comfy() -> Iterator[ComfyUIDouble]:
    double = ComfyUIDouble().start()
    yield double
    double.stop()


@pytest.fixture
async def server(fresh_db_url: str, tmp_path: Path, comfy: ComfyUIDouble):
    provider, _ = make_provider()
    api = await ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url).start()
    yield api
    await api.stop()


async def new_session(client: Any) -> str:
    response = await client.post("/api/sessions", json={"name": "images"})
    assert response.status_code == 201
    return str(response.json()["id"])


async def upload(client: Any, sid: str, data: bytes, name: str = "photo.png") -> Any:
    return await client.post(
        f"/api/sessions/{sid}/images", files={"file": (name, data, "application/octet-stream")}
    )


async def start_with_image(client: Any, sid: str, text: str, refs: list[str]) -> str:
    created = await client.post(f"/api/sessions/{sid}/conversations", json={})
    assert created.status_code == 201, created.text
    cid = str(created.json()["id"])
    sent = await client.post(
        f"/api/conversations/{cid}/messages", json={"content": text, "images": refs}
    )
    assert sent.status_code == 202, sent.text
    return cid


def prompts_with(comfy: ComfyUIDouble, class_type: str) -> list[dict[str, Any]]:
    return [
        body["prompt"]
        for body in comfy.posted
        if any(n["class_type"] == class_type for n in body["prompt"].values())
    ]


def node(prompt: dict[str, Any], class_type: str) -> dict[str, Any]:
    return next(n for n in prompt.values() if n["class_type"] == class_type)


# ----------------------------------------------------------------------------- uploads


async def test_bad_files_are_refused_with_a_clear_error(server: ApiServer):
    async with server.client() as client:
        sid = await new_session(client)
        text = await upload(client, sid, b"just some words, not pixels", "notes.png")
        assert text.status_code == 422
        assert "not an image" in text.json()["error"]["message"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("inside.txt", "hello")
        renamed = await upload(client, sid, archive.getvalue(), "holiday.png")
        assert renamed.status_code == 422
        assert "whatever its name says" in renamed.json()["error"]["message"]
        wide = await upload(client, sid, image_bytes(9000, 16), "wide.png")  # small file
        assert wide.status_code == 413 and wide.json()["error"]["code"] == "image_too_large"
        assert "9000x16" in wide.json()["error"]["message"]
        heavy = await upload(client, sid, b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_IMAGE_BYTES + 10))
        assert heavy.status_code == 413
        gif = io.BytesIO()
        Image.new("RGB", (32, 32)).save(gif, "GIF")
        unsupported = await upload(client, sid, gif.getvalue(), "anim.gif")
        assert unsupported.status_code == 422 and "GIF" in unsupported.json()["error"]["message"]
        missing = await client.post(f"/api/sessions/{sid}/images")
        assert missing.status_code == 422
        # Nothing refused was stored.
        assert not list((server.data_dir / "generations" / sid).glob("uploads/*"))


async def test_an_upload_is_stored_under_its_session_and_checked_again_when_sent(
    server: ApiServer,
):
    async with server.client() as client:
        sid = await new_session(client)
        data = image_bytes(320, 200, "JPEG")
        response = await upload(client, sid, data, "street.jpg")
        assert response.status_code == 201, response.text
        image = response.json()
        assert image["width"] == 320 and image["height"] == 200
        assert image["content_type"] == "image/jpeg" and image["name"] == "street.jpg"
        assert image["ref"].startswith(f"{sid}/uploads/") and image["ref"].endswith(".jpg")
        served = await client.get(image["url"])
        assert served.status_code == 200 and served.content == data
        assert (server.data_dir / "generations" / image["ref"]).read_bytes() == data
        other = await new_session(client)
        created = await client.post(f"/api/sessions/{other}/conversations", json={})
        cid = created.json()["id"]
        foreign = await client.post(
            f"/api/conversations/{cid}/messages",
            json={"content": "use it", "images": [image["ref"]]},
        )
        assert foreign.status_code == 422 and "another session" in foreign.text
        ghost = await client.post(
            f"/api/conversations/{cid}/messages",
            json={"content": "use it", "images": [f"{other}/uploads/nothing.png"]},
        )
        assert ghost.status_code == 404
        escape = await client.post(
            f"/api/conversations/{cid}/messages",
            json={"content": "use it", "images": ["../../etc/passwd"]},
        )
        assert escape.status_code == 422


# ----------------------------------------------------------------------------- img2img


async def test_an_image_given_in_the_chat_becomes_an_img2img_in_comfyui(
    server: ApiServer, comfy: ComfyUIDouble
):
    async with server.client() as client:
        sid = await new_session(client)
        image = (await upload(client, sid, image_bytes(96, 64))).json()
        cid = await start_with_image(
            client, sid, "a cyberpunk street at night, keep it close to my photo", [image["ref"]]
        )
        await asyncio.wait_for(collect_until_done(client, cid), 120)
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        assert detail["generation"]["status"] == "complete", detail["generation"]
        assert detail["plan"]["template"] == "img2img"
        messages = (await client.get(f"/api/conversations/{cid}/messages")).json()
        person = next(m for m in messages if m["role"] == "user")
        assert person["metadata"]["images"][0]["ref"] == image["ref"]
    # ComfyUI got the image first, then a prompt whose LoadImage names the uploaded file.
    paths = [r["path"] for r in comfy.requests if r["path"] in ("/upload/image", "/prompt")]
    assert paths.index("/upload/image") < paths.index("/prompt")
    (prompt,) = prompts_with(comfy, "LoadImage")
    name = node(prompt, "LoadImage")["inputs"]["image"]
    assert comfy.files[("input", "", name)] == image_bytes(96, 64)
    sampler = node(prompt, "KSampler")["inputs"]
    assert sampler["denoise"] == pytest.approx(0.35)  # "keep it close"
    assert (
        node(prompt, "ImageScale")["inputs"]["width"]
        > node(prompt, "ImageScale")["inputs"]["height"]
    )  # the photo's landscape shape is kept


async def test_upscale_it_upscales_the_last_result(server: ApiServer, comfy: ComfyUIDouble):
    async with server.client() as client:
        sid = await new_session(client)
        created = await client.post(
            f"/api/sessions/{sid}/conversations", json={"message": "a lighthouse in a storm"}
        )
        cid = created.json()["id"]
        await asyncio.wait_for(collect_until_done(client, cid), 120)
        first = (await client.get(f"/api/conversations/{cid}")).json()["generation"]
        assert first["status"] == "complete"
        output = first["outputs"][0]
        stored = (server.data_dir / "generations" / output["path"]).read_bytes()
        last = (await client.get("/api/conversations/" + cid + "/events/log")).json()[-1]["id"]
        sent = await client.post(
            f"/api/conversations/{cid}/messages", json={"content": "upscale it"}
        )
        assert sent.status_code == 202
        await asyncio.wait_for(collect_until_done(client, cid, last_event_id=last), 120)
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        assert detail["generation"]["status"] == "complete", detail["generation"]
        assert detail["generation"]["generation_id"] != first["generation_id"]
        plan = first["plan"]
    (prompt,) = prompts_with(comfy, "LoadImage")
    name = node(prompt, "LoadImage")["inputs"]["image"]
    assert comfy.files[("input", "", name)] == stored  # the previous output went back in
    scale = node(prompt, "ImageScale")["inputs"]
    assert (scale["width"], scale["height"]) == (plan["width"] * 2, plan["height"] * 2)
    upscaled = [
        f for (kind, _, n), f in comfy.files.items() if kind == "output" and n.startswith("studio_")
    ]
    assert len(upscaled) == 2
