"""A test double of Supabase Storage's REST API (``/storage/v1``) over a real socket.

It answers the way supabase/storage (storage-api) and Supabase's API gateway do, as read
from their sources rather than guessed:

* Object routes: upload ``POST /object/{bucket}/{path}`` (raw body, ``Content-Type`` is
  the object's mimetype, ``x-upsert: true`` overwrites, otherwise an existing name is a
  Duplicate) answering ``{"Key": "bucket/path", "Id": ...}``; download ``GET
  /object/{bucket}/{path}`` and ``/object/authenticated/{bucket}/{path}``; signed URLs
  ``POST /object/sign/{bucket}/{path}`` with ``{"expiresIn"}`` answering ``{"signedURL":
  "/object/sign/{bucket}/{path}?token=<jwt>"}`` (relative to ``/storage/v1``), fetched
  without credentials; ``POST /object/list/{bucket}`` ``{prefix, limit, offset}`` with
  storage.search's semantics (the prefix is a folder: a trailing "/" is added; children
  only, files with an id, folders with ``id`` and ``metadata`` null; name order; limit 100
  by default and at most 1500); ``DELETE /object/{bucket}`` ``{"prefixes": [...]}`` (exact
  names, at most 1000, answering the deleted objects) and ``DELETE /object/{bucket}/{path}``.
* Errors: storage-api renders its errors with HTTP 400 (500 for internal errors) and puts
  the real status as a *string* in the body: ``{"statusCode": "404", "code": "NoSuchKey",
  "error": "not_found", "message": "Object not found"}``.
* Auth, in two layers. The gateway wants an ``apikey`` header (401 ``{"message": "No API
  key found in request"}`` / ``{"message": "Invalid API key"}``); for a new secret key
  (``sb_secret_...``) sent without ``Authorization`` it adds a service_role JWT itself.
  Storage then verifies ``Authorization: Bearer <jwt>`` (HS256 with the project's JWT
  secret): a token that is not a JWT — such as an ``sb_secret_`` key, which Supabase's
  docs say never to send as a bearer token — or one with a bad signature is refused with
  400 ``{"statusCode": "403", "error": "Unauthorized", ...}``. Self-hosted Supabase routes
  ``/storage/v1`` without the key check (``gateway=False``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.threaded_server import serve_in_thread, stop_in_thread

SEARCH_MAX_LIMIT = 1500  # storage.search: LEAST(coalesce(limits, 100), 1500)
DELETE_OBJECTS_LIMIT = 1000  # enforceDeleteObjectsLimit's default


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(payload: dict[str, Any], secret: str) -> str:
    """An HS256 JWT, as Supabase signs its legacy keys and signed-URL tokens."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


class _JwtError(Exception):
    pass


def verify_jwt(token: str, secret: str) -> dict[str, Any]:
    """The claims of a valid token; raises with the messages of the ``jose`` library."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise _JwtError("Invalid Compact JWS")
    try:
        header, body, signature = parts
        expected = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        given = _unb64(signature)
        claims: dict[str, Any] = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError):
        raise _JwtError("Invalid Compact JWS") from None
    if not hmac.compare_digest(expected, given):
        raise _JwtError("signature verification failed")
    if "exp" in claims and float(claims["exp"]) < time.time():
        raise _JwtError('"exp" claim timestamp check failed')
    return claims


def storage_error(status: str, error: str, message: str, code: str | None = None) -> Response:
    """storage-api's error rendering: HTTP 400 (500 for 500), the real status in the body."""
    http = 500 if status == "500" else 400
    body = {"statusCode": status, "code": code or error, "error": error, "message": message}
    return JSONResponse(body, status_code=http)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class StoredObject:
    id: str
    data: bytes
    content_type: str
    cache_control: str
    created_at: str
    updated_at: str

    def metadata(self) -> dict[str, Any]:
        return {
            "eTag": f'"{hashlib.md5(self.data).hexdigest()}"',  # what S3 puts in an ETag
            "size": len(self.data),
            "mimetype": self.content_type,
            "cacheControl": self.cache_control,
            "lastModified": self.updated_at,
            "contentLength": len(self.data),
            "httpStatusCode": 200,
        }


@dataclass
class SupabaseStorageDouble:
    """Start with ``start()``; keys in ``service_role_key`` (legacy JWT) and ``secret_key``."""

    buckets: set[str] = field(default_factory=lambda: {"generations"})
    gateway: bool = True  # hosted Supabase: the gateway checks the apikey header first
    search_max_limit: int = SEARCH_MAX_LIMIT
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    service_role_key: str = ""
    anon_key: str = ""
    secret_key: str = field(default_factory=lambda: "sb_secret_" + secrets.token_urlsafe(24))
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        issued = int(time.time())
        claims = {"iss": "supabase", "ref": "double", "iat": issued, "exp": issued + 10**8}
        self.service_role_key = sign_jwt({**claims, "role": "service_role"}, self.jwt_secret)
        self.anon_key = sign_jwt({**claims, "role": "anon"}, self.jwt_secret)

    @property
    def url(self) -> str:
        """What SUPABASE_URL would be (the project URL, without /storage/v1)."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ auth

    def _authenticate(self, request: Request) -> Response | dict[str, Any]:
        """The gateway's key check, then storage's JWT check; claims or the refusal."""
        authorization = request.headers.get("authorization")
        if self.gateway:
            apikey = request.headers.get("apikey") or request.query_params.get("apikey")
            if not apikey:
                return JSONResponse(
                    {
                        "message": "No API key found in request",
                        "hint": "No `apikey` request header or url param was found.",
                    },
                    status_code=401,
                )
            if apikey not in (self.service_role_key, self.anon_key, self.secret_key):
                return JSONResponse(
                    {
                        "message": "Invalid API key",
                        "hint": "Double check your Supabase `anon` or `service_role` API key.",
                    },
                    status_code=401,
                )
            if apikey == self.secret_key and authorization is None:
                authorization = f"Bearer {self.service_role_key}"
        token = (authorization or "").removeprefix("Bearer ").removeprefix("bearer ").strip()
        if not token:
            return storage_error(
                "400",
                "Error",
                "headers must have required property 'authorization'",
                "InvalidRequest",
            )
        try:
            claims = verify_jwt(token, self.jwt_secret)
        except _JwtError as error:
            return storage_error("403", "Unauthorized", str(error), "AccessDenied")
        if claims.get("role") != "service_role":
            return storage_error(
                "403",
                "Unauthorized",
                "new row violates row-level security policy",
                "AccessDenied",
            )
        return claims

    def _log(self, request: Request, body: Any = None) -> None:
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": str(request.url.query),
                "headers": dict(request.headers),
                "body": body,
            }
        )

    def _bucket(self, name: str) -> Response | None:
        if name not in self.buckets:
            return storage_error("404", "Bucket not found", "Bucket not found", "NoSuchBucket")
        return None

    @staticmethod
    def _missing() -> Response:
        return storage_error("404", "not_found", "Object not found", "NoSuchKey")

    async def _json_body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return storage_error("400", "Bad Request", "Body is not valid JSON", "InvalidRequest")
        if not isinstance(body, dict):
            return storage_error("400", "Bad Request", "body must be object", "InvalidRequest")
        return body

    # ------------------------------------------------------------------ routes

    async def _upload(self, request: Request) -> Response:
        bucket, name = request.path_params["bucket"], request.path_params["path"]
        data = await request.body()
        self._log(request, len(data))
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        if (refused := self._bucket(bucket)) is not None:
            return refused
        existing = self.objects.get((bucket, name))
        if existing is not None and request.headers.get("x-upsert") != "true":
            return storage_error(
                "409", "Duplicate", "The resource already exists", "KeyAlreadyExists"
            )
        now = _now()
        stored = StoredObject(
            id=existing.id if existing else str(uuid4()),
            data=data,
            content_type=request.headers.get("content-type") or "text/plain;charset=UTF-8",
            cache_control=request.headers.get("cache-control") or "max-age=3600",
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        self.objects[(bucket, name)] = stored
        return JSONResponse({"Key": f"{bucket}/{name}", "Id": stored.id})

    async def _download(self, request: Request) -> Response:
        bucket, name = request.path_params["bucket"], request.path_params["path"]
        self._log(request)
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        if (refused := self._bucket(bucket)) is not None:
            return refused
        stored = self.objects.get((bucket, name))
        if stored is None:
            return self._missing()
        return Response(stored.data, media_type=stored.content_type)

    async def _sign(self, request: Request) -> Response:
        bucket, name = request.path_params["bucket"], request.path_params["path"]
        body = await self._json_body(request)
        self._log(request, body)
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        if isinstance(body, Response):
            return body
        expires = body.get("expiresIn")
        if not isinstance(expires, int) or isinstance(expires, bool) or expires < 1:
            return storage_error(
                "400", "Bad Request", "body/expiresIn must be >= 1", "InvalidRequest"
            )
        if (refused := self._bucket(bucket)) is not None:
            return refused
        if (bucket, name) not in self.objects:
            return self._missing()
        token = sign_jwt(
            {"url": f"{bucket}/{name}", "iat": int(time.time()), "exp": int(time.time()) + expires},
            self.jwt_secret,
        )
        # The path as the client sent it (percent-encoded), relative to /storage/v1.
        path = request.url.path.removeprefix("/storage/v1")
        return JSONResponse({"signedURL": f"{path}?token={token}"})

    async def _signed_download(self, request: Request) -> Response:
        bucket, name = request.path_params["bucket"], request.path_params["path"]
        self._log(request)
        token = request.query_params.get("token")
        if not token:
            return storage_error("400", "InvalidSignature", "Missing token", "InvalidSignature")
        try:
            claims = verify_jwt(token, self.jwt_secret)
        except _JwtError as error:
            code = "ExpiredToken" if "exp" in str(error) else "InvalidJWT"
            return storage_error("400", code, str(error), code)
        if claims.get("url") != f"{bucket}/{name}":
            return storage_error(
                "400", "InvalidSignature", "The url do not match the signature", "InvalidSignature"
            )
        stored = self.objects.get((bucket, name))
        if stored is None:
            return self._missing()
        return Response(stored.data, media_type=stored.content_type)

    def search(self, bucket: str, prefix: str, limit: int, offset: int) -> list[dict[str, Any]]:
        """storage.search: the children of the folder ``prefix``, folders as id-less rows."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"  # storage-api: "assuming prefix is always a folder"
        level = len(prefix.split("/"))
        children: dict[str, dict[str, Any]] = {}
        for (b, name), stored in self.objects.items():
            if b != bucket or not name.lower().startswith(prefix.lower()):  # ILIKE
                continue
            parts = name.split("/")
            child = parts[level - 1]
            if len(parts) > level:
                children.setdefault(
                    child.lower() + "/",
                    {
                        "name": child,
                        "id": None,
                        "updated_at": None,
                        "created_at": None,
                        "last_accessed_at": None,
                        "metadata": None,
                    },
                )
            else:
                children[name.lower()] = {
                    "name": child,
                    "id": stored.id,
                    "updated_at": stored.updated_at,
                    "created_at": stored.created_at,
                    "last_accessed_at": stored.updated_at,
                    "metadata": stored.metadata(),
                }
        ordered = [children[key] for key in sorted(children)]
        return ordered[offset : offset + min(limit, self.search_max_limit)]

    async def _list(self, request: Request) -> Response:
        bucket = request.path_params["bucket"]
        body = await self._json_body(request)
        self._log(request, body)
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        if isinstance(body, Response):
            return body
        prefix = body.get("prefix")
        if not isinstance(prefix, str):
            return storage_error(
                "400", "Bad Request", "body must have required property 'prefix'", "InvalidRequest"
            )
        limit, offset = body.get("limit", 100), body.get("offset", 0)
        if not isinstance(limit, int) or limit < 1 or not isinstance(offset, int) or offset < 0:
            return storage_error("400", "Bad Request", "body/limit must be >= 1", "InvalidRequest")
        if (refused := self._bucket(bucket)) is not None:
            return refused
        return JSONResponse(self.search(bucket, prefix, limit, offset))

    async def _delete_many(self, request: Request) -> Response:
        bucket = request.path_params["bucket"]
        body = await self._json_body(request)
        self._log(request, body)
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        if isinstance(body, Response):
            return body
        prefixes = body.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            return storage_error(
                "400",
                "Bad Request",
                "body/prefixes must NOT have fewer than 1 items",
                "InvalidRequest",
            )
        if len(prefixes) > DELETE_OBJECTS_LIMIT:
            return storage_error(
                "400",
                "InvalidRequest",
                f"Maximum number of prefixes allowed is {DELETE_OBJECTS_LIMIT}",
                "InvalidRequest",
            )
        if (refused := self._bucket(bucket)) is not None:
            return refused
        deleted = []
        for name in prefixes:
            stored = self.objects.pop((bucket, str(name)), None)
            if stored is not None:
                deleted.append(
                    {
                        "bucket_id": bucket,
                        "name": name,
                        "owner": None,
                        "id": stored.id,
                        "updated_at": stored.updated_at,
                        "created_at": stored.created_at,
                        "last_accessed_at": stored.updated_at,
                        "metadata": stored.metadata(),
                    }
                )
        return JSONResponse(deleted)

    async def _delete_one(self, request: Request) -> Response:
        bucket, name = request.path_params["bucket"], request.path_params["path"]
        self._log(request)
        auth = self._authenticate(request)
        if isinstance(auth, Response):
            return auth
        if (refused := self._bucket(bucket)) is not None:
            return refused
        if self.objects.pop((bucket, name), None) is None:
            return self._missing()
        return JSONResponse({"message": "Successfully deleted"})

    # ------------------------------------------------------------------ server

    def app(self) -> Starlette:
        base = "/storage/v1/object"
        # Static segments (sign, list, authenticated) before the bucket wildcard, as
        # Fastify's router matches them.
        return Starlette(
            routes=[
                Route(f"{base}/sign/{{bucket}}/{{path:path}}", self._sign, methods=["POST"]),
                Route(
                    f"{base}/sign/{{bucket}}/{{path:path}}", self._signed_download, methods=["GET"]
                ),
                Route(f"{base}/list/{{bucket}}", self._list, methods=["POST"]),
                Route(
                    f"{base}/authenticated/{{bucket}}/{{path:path}}",
                    self._download,
                    methods=["GET"],
                ),
                Route(f"{base}/{{bucket}}/{{path:path}}", self._upload, methods=["POST"]),
                Route(f"{base}/{{bucket}}/{{path:path}}", self._download, methods=["GET"]),
                Route(f"{base}/{{bucket}}/{{path:path}}", self._delete_one, methods=["DELETE"]),
                Route(f"{base}/{{bucket}}", self._delete_many, methods=["DELETE"]),
            ]
        )

    def start(self) -> SupabaseStorageDouble:
        self._server, self._thread, self.port = serve_in_thread(
            self.app(), name="the Supabase Storage double"
        )
        return self

    def stop(self) -> None:
        stop_in_thread(self._server, self._thread)
        self._server = None
        self._thread = None

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "image/png") -> None:
        """Seed an object directly (what another client uploaded)."""
        now = _now()
        self.objects[(bucket, name)] = StoredObject(
            str(uuid4()), data, content_type, "max-age=3600", now, now
        )

    def names(self, bucket: str = "generations") -> list[str]:
        return sorted(name for b, name in self.objects if b == bucket)
