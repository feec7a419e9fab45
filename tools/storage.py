"""The ``generations`` bucket: a local directory by default, Supabase Storage when configured.

Every file lives at ``{session_id}/{generation_id}/{filename}`` (the path the generations
table's ``outputs`` records). Both backends take the same path, so moving from the local
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

from creative_studio.tools.errors import InvalidInputError, NotFoundError, StudioError

__all__ = [
    "BUCKET",
    "LocalStorage",
    "Storage",
    "StorageError",
    "StoredFile",
    "SupabaseStorage",
    "object_path",
    "storage_from_env",
]

BUCKET = "generations"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ ()\-]{0,199}$")


class StorageError(StudioError):
    status_code = 502
    code = "storage_error"


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
            raise NotFoundError(f"No stored file {path}.") from None

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
    """Supabase Storage's REST API (``{SUPABASE_URL}/storage/v1``), private bucket, signed URLs."""

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
        self._headers = {"Authorization": f"Bearer {key}", "apikey": key}
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _object(self, path: str) -> str:
        return f"{self.base}/object/{self.bucket}/{quote(_check_path(path))}"

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response = await self._http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise StorageError(f"Supabase Storage is not reachable: {error}") from error
        if response.status_code == 404 or (
            response.status_code == 400 and "not found" in response.text.lower()
        ):
            raise NotFoundError(f"Not found in Supabase Storage: {url.rsplit('/object/', 1)[-1]}")
        if response.status_code >= 400:
            raise StorageError(
                f"Supabase Storage answered {response.status_code}: {response.text[:200]}"
            )
        return response

    async def put(self, path: str, data: bytes, content_type: str) -> StoredFile:
        await self._call(
            "POST",
            self._object(path),
            content=data,
            headers={"Content-Type": content_type, "x-upsert": "true"},
        )
        return StoredFile(
            path, path.rsplit("/", 1)[-1], content_type, len(data), await self.url(path)
        )

    async def get(self, path: str) -> bytes:
        response = await self._call("GET", self._object(path))
        return response.content

    async def url(self, path: str, expires_in: int = 3600) -> str:
        sign = f"{self.base}/object/sign/{self.bucket}/{quote(_check_path(path))}"
        response = await self._call("POST", sign, json={"expiresIn": expires_in})
        signed = str(response.json().get("signedURL") or response.json().get("signedUrl") or "")
        return signed if signed.startswith("http") else f"{self.base}/{signed.lstrip('/')}"

    async def delete(self, path: str) -> None:
        await self._call(
            "DELETE", f"{self.base}/object/{self.bucket}", json={"prefixes": [_check_path(path)]}
        )

    async def _list(self, prefix: str) -> list[dict[str, Any]]:
        response = await self._call(
            "POST",
            f"{self.base}/object/list/{self.bucket}",
            json={"prefix": prefix, "limit": 1000, "offset": 0},
        )
        items = response.json()
        return items if isinstance(items, list) else []

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
