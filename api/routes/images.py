"""Images a person gives the team: upload one to a session, then send its ``ref`` with a message.

Uploads are checked by content (tools/images.py: PNG, JPEG or WebP as Pillow decodes them,
within a size and a pixel limit) and stored under the session like outputs
(``{session_id}/uploads/{sha256}.{ext}``: the same image twice is one file). A message may
also carry the path of one of the session's results ("Use as init image"); either way
``resolve_images`` reads the file back and checks it again before the team hears of it, so a
ref can never point outside its session or at something that is not an image.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, UploadFile, status
from fastapi.responses import Response

from creative_studio.api.deps import Studio, StudioDep
from creative_studio.api.schemas import ErrorResponse, ImageOut
from creative_studio.core.errors import InvalidInputError, NotFoundError
from creative_studio.tools.images import (
    MAX_IMAGE_BYTES,
    ImageInfo,
    TooLargeImageError,
    inspect_image,
)
from creative_studio.tools.storage import UPLOADS, session_of, upload_path

router = APIRouter(prefix="/sessions", tags=["images"])

# What BodyLimit lets through for an upload: the image plus the multipart framing.
UPLOAD_BODY_LIMIT = MAX_IMAGE_BYTES + 64 * 1024


def _url(ref: str) -> str:
    session_id, folder, filename = ref.split("/")
    if folder == UPLOADS:
        return f"/api/sessions/{session_id}/images/{quote(filename)}"
    return f"/api/generations/{folder}/outputs/{quote(filename)}"


@router.post(
    "/{session_id}/images",
    status_code=status.HTTP_201_CREATED,
    responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def upload_image(
    session_id: str,
    studio: StudioDep,
    file: Annotated[UploadFile, File(description="A PNG, JPEG or WebP image (multipart).")],
) -> ImageOut:
    """Store an image for the session; send its ``ref`` in ``images`` of a message."""
    session = await studio.repository.get_session(session_id)
    data = await file.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise TooLargeImageError(f"The image is over the {MAX_IMAGE_BYTES / 1e6:.0f} MB limit.")
    info = inspect_image(data)
    path = upload_path(session.id, info.stored_name)
    await studio.storage.put(path, data, info.content_type)
    return ImageOut(
        ref=path,
        filename=path.rsplit("/", 1)[-1],
        content_type=info.content_type,
        width=info.width,
        height=info.height,
        size=info.size,
        source="upload",
        url=_url(path),
        name=(file.filename or None) and str(file.filename)[:200],
    )


@router.get(
    "/{session_id}/images/{filename}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
async def get_image(session_id: str, filename: str, studio: StudioDep) -> Response:
    """An uploaded image of the session (what the chat shows beside the message)."""
    session = await studio.repository.get_session(session_id)
    data = await studio.storage.get(upload_path(session.id, filename))
    info = inspect_image(data)
    return Response(
        data,
        media_type=info.content_type,
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


async def resolve_images(studio: Studio, session_id: str, refs: list[str]) -> list[dict[str, Any]]:
    """The refs a message carries, checked: in this session, stored, and really images."""
    resolved: list[dict[str, Any]] = []
    for ref in refs:
        try:
            owner = session_of(ref)
        except InvalidInputError:
            raise InvalidInputError(f"{ref!r} is not an image reference.") from None
        if owner != str(session_id):
            raise InvalidInputError(f"The image {ref!r} belongs to another session.")
        try:
            data = await studio.storage.get(ref)
        except NotFoundError:
            raise NotFoundError(f"No stored image {ref!r}: upload it first.") from None
        resolved.append(image_ref(ref, inspect_image(data)))
    return resolved


def image_ref(ref: str, info: ImageInfo) -> dict[str, Any]:
    """What a message's ``additional_kwargs["images"]`` holds for one checked image."""
    return {
        "ref": ref,
        "filename": ref.rsplit("/", 1)[-1],
        "content_type": info.content_type,
        "width": info.width,
        "height": info.height,
        "source": "upload" if ref.split("/")[1] == UPLOADS else "output",
        "url": _url(ref),
    }
