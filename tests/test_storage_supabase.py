"""SupabaseStorage against a double of Supabase Storage's REST API, over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from creative_studio.core.errors import NotFoundError
from creative_studio.tools.storage import (
    StorageError,
    SupabaseStorage,
    object_path,
    storage_from_env,
)
from tests.supabase_storage_double import SupabaseStorageDouble

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 10


@pytest.fixture
def double() -> Iterator[SupabaseStorageDouble]:
    server = SupabaseStorageDouble().start()
    yield server
    server.stop()


@pytest.fixture
async def storage(double: SupabaseStorageDouble) -> AsyncIterator[SupabaseStorage]:
    client = SupabaseStorage(double.url, double.service_role_key)
    yield client
    await client.aclose()


async def test_put_get_sign_and_overwrite(storage: SupabaseStorage, double: SupabaseStorageDouble):
    path = object_path("s1", "g1", "image (1).png")  # spaces and brackets are allowed names
    stored = await storage.put(path, PNG, "image/png")
    assert (stored.path, stored.filename, stored.size) == (path, "image (1).png", len(PNG))
    assert double.objects[("generations", path)].content_type == "image/png"
    assert await storage.get(path) == PNG
    # The signed URL is absolute and works without any key, as a browser would use it.
    assert stored.url.startswith(f"{double.url}/storage/v1/object/sign/generations/s1/g1/")
    async with httpx.AsyncClient() as anonymous:
        fetched = await anonymous.get(await storage.url(path, expires_in=60))
    assert fetched.status_code == 200 and fetched.content == PNG
    # x-upsert: a second put of the same path replaces the object instead of failing.
    await storage.put(path, b"second", "image/png")
    assert await storage.get(path) == b"second"
    upload = next(r for r in double.requests if r["method"] == "POST" and "/sign/" not in r["path"])
    assert upload["headers"]["x-upsert"] == "true"
    assert upload["headers"]["apikey"] == double.service_role_key
    assert upload["headers"]["authorization"] == f"Bearer {double.service_role_key}"


async def test_deleting_a_prefix_removes_nested_folders_and_nothing_else(
    storage: SupabaseStorage, double: SupabaseStorageDouble
):
    for session, generation, name in [
        ("s1", "g1", "a.png"),
        ("s1", "g1", "b.png"),
        ("s1", "g2", "c.webp"),
        ("s10", "g9", "keep.png"),  # shares the prefix "s1" as text, not as a folder
        ("s2", "g3", "keep.png"),
    ]:
        await storage.put(object_path(session, generation, name), PNG, "image/png")
    # What the list endpoint really answers: children of a folder, folders without an id.
    listed = double.search("generations", "s1", 100, 0)
    assert [(i["name"], i["id"]) for i in listed] == [("g1", None), ("g2", None)]
    files = double.search("generations", "s1/g1", 100, 0)
    assert [i["name"] for i in files] == ["a.png", "b.png"] and all(i["id"] for i in files)
    await storage.delete_prefix("s1")
    assert double.names() == ["s10/g9/keep.png", "s2/g3/keep.png"]
    await storage.delete_prefix("s2/g3")
    assert double.names() == ["s10/g9/keep.png"]
    await storage.delete(object_path("s10", "g9", "keep.png"))
    assert double.names() == []
    await storage.delete_prefix("nobody")  # nothing there: nothing to do, no error


async def test_a_folder_larger_than_one_list_page_is_deleted_completely(
    storage: SupabaseStorage, double: SupabaseStorageDouble
):
    """storage.search answers at most 1500 rows a call (100 unless asked): page through.

    The double's cap is lowered to 3 so a handful of generations stand in for thousands.
    """
    double.search_max_limit = 3
    for index in range(8):
        await storage.put(object_path("big", f"g{index}", "out.png"), PNG, "image/png")
    await storage.put(object_path("other", "g", "out.png"), PNG, "image/png")
    await storage.delete_prefix("big")
    assert double.names() == ["other/g/out.png"]


async def test_a_missing_file_is_a_clear_not_found(storage: SupabaseStorage):
    path = object_path("s1", "g1", "nothing.png")
    with pytest.raises(NotFoundError) as caught:
        await storage.get(path)
    # Both: the API answers 404 for it, and callers catching StorageError see it too.
    assert isinstance(caught.value, StorageError)
    assert caught.value.status_code == 404
    assert "s1/g1/nothing.png" in caught.value.message
    assert "generations" in caught.value.message
    with pytest.raises(NotFoundError):
        await storage.url(path)
    await storage.delete(path)  # deleting what is not there is not an error


async def test_a_wrong_key_is_a_clear_storage_error(double: SupabaseStorageDouble):
    wrong = SupabaseStorage(double.url, "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.bad")
    try:
        with pytest.raises(StorageError) as caught:
            await wrong.put(object_path("s", "g", "a.png"), PNG, "image/png")
    finally:
        await wrong.aclose()
    message = caught.value.message
    assert not isinstance(caught.value, NotFoundError)
    assert "Invalid API key" in message and "SUPABASE_SERVICE_ROLE_KEY" in message
    assert double.objects == {}


async def test_a_bad_token_behind_no_gateway_is_a_clear_storage_error(
    double: SupabaseStorageDouble,
):
    """Self-hosted: /storage/v1 has no key check, storage-api refuses the JWT itself."""
    double.gateway = False
    forged = SupabaseStorage(double.url, double.service_role_key[:-4] + "AAAA")
    try:
        with pytest.raises(StorageError) as caught:
            await forged.get(object_path("s", "g", "a.png"))
    finally:
        await forged.aclose()
    assert not isinstance(caught.value, NotFoundError)
    assert "signature verification failed" in caught.value.message
    assert "SUPABASE_SERVICE_ROLE_KEY" in caught.value.message


async def test_a_new_secret_key_is_sent_as_apikey_only(double: SupabaseStorageDouble):
    """sb_secret_ keys are not JWTs: the gateway accepts them in apikey, never as Bearer."""
    client = SupabaseStorage(double.url, double.secret_key)
    try:
        path = object_path("s", "g", "a.png")
        await client.put(path, PNG, "image/png")
        assert await client.get(path) == PNG
        await client.delete_prefix("s")
    finally:
        await client.aclose()
    assert double.names() == []
    assert all("authorization" not in r["headers"] for r in double.requests)
    assert all(r["headers"]["apikey"] == double.secret_key for r in double.requests)


async def test_a_missing_bucket_says_so(double: SupabaseStorageDouble, storage: SupabaseStorage):
    double.buckets.clear()
    with pytest.raises(StorageError) as caught:
        await storage.put(object_path("s", "g", "a.png"), PNG, "image/png")
    assert not isinstance(caught.value, NotFoundError)
    assert "bucket 'generations'" in caught.value.message


async def test_an_unreachable_server_is_a_storage_error(double: SupabaseStorageDouble):
    url = double.url
    double.stop()
    client = SupabaseStorage(url, double.service_role_key, timeout=5)
    try:
        with pytest.raises(StorageError, match="not reachable"):
            await client.get(object_path("s", "g", "a.png"))
    finally:
        await client.aclose()


async def test_the_environment_selects_supabase_storage(double: SupabaseStorageDouble, tmp_path):
    chosen = storage_from_env(
        tmp_path, {"SUPABASE_URL": double.url, "SUPABASE_SERVICE_ROLE_KEY": double.secret_key}
    )
    assert isinstance(chosen, SupabaseStorage)
    try:
        await chosen.put(object_path("s", "g", "a.png"), PNG, "image/png")
        assert await chosen.get(object_path("s", "g", "a.png")) == PNG
    finally:
        await chosen.aclose()
