"""The ``generations`` bucket: a local directory by default, Supabase Storage when configured.

Every file lives at ``{session_id}/{generation_id}/{filename}`` (the path the generations
table's ``outputs`` records); images a person gives the studio live beside them at
``{session_id}/uploads/{sha256 prefix}.{ext}`` (``upload_path``), so they go with their session. Both backends take the same path, so moving from the local
studio to Supabase changes where the bytes go, never what the rest of the studio stores.

Supabase Storage is spoken to over its REST API with httpx (no SDK: the supabase package
pins an older httpx and would drag the whole client in for three calls).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from creative_studio.core.errors import InvalidInputError, NotFoundError, StudioError
from creative_studio.tools.tls import tls_context

__all__ = [
    "BUCKET",
    "UPLOADS",
    "LocalStorage",
    "Storage",
    "StorageError",
    "StorageNotFoundError",
    "StoredFile",
    "SupabaseStorage",
    "object_path",
    "session_of",
    "storage_from_env",
    "upload_path",
]

BUCKET = "generations"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ ()\-]{0,199}$")


class StorageError(StudioError):
    status_code = 502
    code = "storage_error"


class StorageNotFoundError(NotFoundError, StorageError):
    """No file at that path: a 404 for the API, and a StorageError for storage callers."""


@dataclass(frozen=True)
class StoredFile:
    path: str  # bucket-relative: {session_id}/{generation_id}/{filename}
    filename: str
    content_type: str
    size: int
    url: str  # where a client can fetch it (file URI locally, signed URL on Supabase)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "url": self.url,
        }


def _segment(value: str, what: str) -> str:
    value = str(value)
    if not _SEGMENT.match(value) or ".." in value:
        raise InvalidInputError(f"Invalid {what} for storage: {value!r} (a plain name only).")
    return value


def object_path(session_id: object, generation_id: object, filename: str) -> str:
    """``{session_id}/{generation_id}/{filename}``, refusing anything that could escape it."""
    return "/".join(
        (
            _segment(str(session_id), "session id"),
            _segment(str(generation_id), "generation id"),
            _segment(filename, "file name"),
        )
    )


UPLOADS = "uploads"  # the folder of a session's uploaded images (not a generation id)


def upload_path(session_id: object, filename: str) -> str:
    """``{session_id}/uploads/{filename}``: an image the person gave, stored like an output."""
    return object_path(session_id, UPLOADS, filename)


def session_of(path: str) -> str:
    """The session a stored file belongs to (refuses a path that is not a storage path)."""
    return _check_path(path).split("/", 1)[0]


def _check_path(path: str) -> str:
    parts = path.split("/")
    if len(parts) != 3:
        raise InvalidInputError(f"Invalid storage path {path!r}.")
    return object_path(*parts)


class Storage(Protocol):
    bucket: str

    async def put(self, path: str, data: bytes, content_type: str) -> StoredFile: ...

    async def get(self, path: str) -> bytes: ...

    async def url(self, path: str, expires_in: int = 3600) -> str: ...

    async def delete(self, path: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> None: ...


class LocalStorage:
    """Files under ``root/generations/``; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path, bucket: str = BUCKET) -> None:
        self.root = Path(root)
        self.bucket = bucket

    def _file(self, path: str) -> Path:
        return self.root / self.bucket / _check_path(path)

    async def put(self, path: str, data: bytes, content_type: str) -> StoredFile:
        target = self._file(path)

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            partial.write_bytes(data)
            partial.replace(target)

        await asyncio.to_thread(write)  # disk I/O off the event loop
        return StoredFile(path, target.name, content_type, len(data), target.resolve().as_uri())

    async def get(self, path: str) -> bytes:
        target = self._file(path)
        try:
            return await asyncio.to_thread(target.read_bytes)
        except FileNotFoundError:
            raise StorageNotFoundError(f"No stored file {path}.") from None

    async def url(self, path: str, expires_in: int = 3600) -> str:
        return self._file(path).resolve().as_uri()

    async def delete(self, path: str) -> None:
        target = self._file(path)
        await asyncio.to_thread(target.unlink, True)

    async def delete_prefix(self, prefix: str) -> None:
        """Everything of a session (``{session_id}``) or a generation (``{session}/{gen}``)."""
        parts = [_segment(p, "path segment") for p in prefix.strip("/").split("/")]
        if not 1 <= len(parts) <= 2:
            raise InvalidInputError(f"Invalid storage prefix {prefix!r}.")
        target = self.root / self.bucket / "/".join(parts)
        await asyncio.to_thread(shutil.rmtree, target, True)


class SupabaseStorage:
    """Supabase Storage's REST API (``{SUPABASE_URL}/storage/v1``), private bucket, signed URLs.

    What the real service does that a client must know (checked against supabase/storage
    and exercised by ``tests/supabase_storage_double.py``):

    * storage-api answers its errors with HTTP 400 and the real status as a string in
      the body (``{"statusCode": "404", "error": "not_found", "message": "Object not
      found"}``), so the body, not the HTTP status, says what went wrong.
    * The list endpoint returns one folder level at a time, folders without an ``id``,
      and at most 1500 rows a call: deleting a prefix walks the folders and pages.
    * Legacy keys (service_role JWT) go in both ``apikey`` and ``Authorization``; the new
      secret keys (``sb_secret_...``) are not JWTs and go in ``apikey`` only (Supabase's
      docs: never as a bearer token) — the gateway puts a service_role JWT in
      ``Authorization`` itself, and storage-api cannot verify an ``sb_`` key as a JWT.
    """

    _PAGE = 1000  # rows asked per list call (the server caps at 1500, or less)

    def __init__(
        self,
        url: str,
        key: str,
        bucket: str = BUCKET,
        *,
        timeout: float = 60.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base = url.rstrip("/") + "/storage/v1"
        self.bucket = bucket
        self._headers = {"apikey": key}
        if not key.startswith("sb_"):
            self._headers["Authorization"] = f"Bearer {key}"
        self._http = http or httpx.AsyncClient(timeout=timeout, verify=tls_context())

    async def aclose(self) -> None:
        await self._http.aclose()

    def _object(self, path: str) -> str:
        return f"{self.base}/object/{self.bucket}/{quote(_check_path(path))}"

    def _refusal(self, response: httpx.Response, what: str) -> StudioError:
        """The error a person can act on, read from storage-api's or the gateway's body."""
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        status = str(body.get("statusCode") or response.status_code)
        error = str(body.get("error") or "")
        message = str(body.get("message") or response.text[:200] or response.reason_phrase)
        if status == "404" and "bucket" in f"{error} {message}".lower():
            return StorageError(
                f"Supabase Storage has no bucket {self.bucket!r}: create it as a private "
                "bucket (supabase/migrations does on `supabase db push`)."
            )
        if status == "404":
            return StorageNotFoundError(
                f"No stored file {what} in the Supabase Storage bucket {self.bucket!r}."
            )
        if response.status_code == 401 or status in ("401", "403"):
            return StorageError(
                f"Supabase Storage refused the key ({message}): set SUPABASE_SERVICE_ROLE_KEY "
                "to the project's service_role or secret key."
            )
        return StorageError(
            f"Supabase Storage refused {what} ({status}{f' {error}' if error else ''}): {message}"
        )

    async def _call(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response = await self._http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise StorageError(f"Supabase Storage is not reachable: {error}") from error
        if response.status_code >= 400:
            raise self._refusal(response, what)
        return response

    async def put(self, path: str, data: bytes, content_type: str) -> StoredFile:
        await self._call(
            "POST",
            self._object(path),
            path,
            content=data,
            headers={"Content-Type": content_type, "x-upsert": "true"},
        )
        return StoredFile(
            path, path.rsplit("/", 1)[-1], content_type, len(data), await self.url(path)
        )

    async def get(self, path: str) -> bytes:
        response = await self._call("GET", self._object(path), path)
        return response.content

    async def url(self, path: str, expires_in: int = 3600) -> str:
        sign = f"{self.base}/object/sign/{self.bucket}/{quote(_check_path(path))}"
        response = await self._call("POST", sign, path, json={"expiresIn": expires_in})
        body = response.json()
        signed = str(body.get("signedURL") or body.get("signedUrl") or "")
        return signed if signed.startswith("http") else f"{self.base}/{signed.lstrip('/')}"

    async def delete(self, path: str) -> None:
        checked = _check_path(path)
        await self._call(
            "DELETE", f"{self.base}/object/{self.bucket}", path, json={"prefixes": [checked]}
        )

    async def _list(self, folder: str) -> list[dict[str, Any]]:
        """Every entry directly in ``folder``, page by page until a page comes back empty.

        An empty page, not a short one, ends the walk: the server may cap a page below
        what was asked for.
        """
        items: list[dict[str, Any]] = []
        while True:
            response = await self._call(
                "POST",
                f"{self.base}/object/list/{self.bucket}",
                folder,
                json={
                    "prefix": folder,
                    "limit": self._PAGE,
                    "offset": len(items),
                    "sortBy": {"column": "name", "order": "asc"},
                },
            )
            page = response.json()
            if not isinstance(page, list) or not page:
                return items
            items.extend(item for item in page if isinstance(item, dict))

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``{session_id}`` or ``{session_id}/{generation_id}``."""
        parts = [_segment(p, "path segment") for p in prefix.strip("/").split("/")]
        if not 1 <= len(parts) <= 2:
            raise InvalidInputError(f"Invalid storage prefix {prefix!r}.")
        folders = ["/".join(parts)]
        paths: list[str] = []
        while folders:
            folder = folders.pop()
            for item in await self._list(folder):
                name = f"{folder}/{item.get('name', '')}"
                # Folders come back without an id; files have one.
                (paths if item.get("id") else folders).append(name)
        for start in range(0, len(paths), 100):
            await self._call(
                "DELETE",
                f"{self.base}/object/{self.bucket}",
                prefix,
                json={"prefixes": paths[start : start + 100]},
            )


def storage_from_env(data_dir: Path, env: dict[str, str] | None = None) -> Storage:
    """Supabase Storage when SUPABASE_URL and a key are set, else ``data_dir/generations``.

    The key is the service role key (SUPABASE_SERVICE_ROLE_KEY); SUPABASE_KEY is accepted
    too. The bucket is private: clients get signed URLs.
    """
    env = dict(os.environ) if env is None else env
    url = env.get("SUPABASE_URL", "").strip()
    key = (env.get("SUPABASE_SERVICE_ROLE_KEY") or env.get("SUPABASE_KEY") or "").strip()
    if url and key:
        return SupabaseStorage(url, key)
    return LocalStorage(data_dir)
