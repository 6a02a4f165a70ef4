"""Bad input gets a 4xx with a message and changes nothing (malformed JSON, wrong types, ranges, sizes, ids)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import Server


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    base = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {server.api_token}"}) as client:
        yield client


@pytest.fixture(scope="module")
def meeting(api: httpx.Client) -> dict[str, Any]:
    r = api.post("/meetings", json={"title": "fixture"})
    assert r.status_code == 201
    return dict(r.json()["data"])


def assert_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["error"]["code"] == status
    assert body["errors"] == [body["error"]]
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]


def unchanged(api: httpx.Client, meeting: dict[str, Any]) -> None:
    now = api.get(f"/meetings/{meeting['id']}").json()["data"]
    assert now == meeting


def test_malformed_json(api: httpx.Client, meeting: dict[str, Any]) -> None:
    r = api.patch(f"/meetings/{meeting['id']}", content=b'{"title": "x",', headers={"Content-Type": "application/json"})
    assert_error(r, 400, "malformed JSON")
    unchanged(api, meeting)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": 5}, "title"),
        ({"record_on_start": "yes"}, "record_on_start"),
        ({"record_on_start": 0}, "record_on_start"),
        ({"session_keep_alive_time_in_secs": "120"}, "session_keep_alive_time_in_secs"),
        ({"session_keep_alive_time_in_secs": 30}, "session_keep_alive_time_in_secs"),
        ({"session_keep_alive_time_in_secs": 601}, "session_keep_alive_time_in_secs"),
        ({"status": "PAUSED"}, "status"),
        ({"recording_config": {"max_seconds": 10}}, "max_seconds"),
        ({"recording_config": {"file_name_prefix": "../escape"}}, "file_name_prefix"),
        ({"recording_config": {"file_name_prefix": "a/b"}}, "file_name_prefix"),
        ({"recording_config": {"storage_config": {"type": "ftp"}}}, "type"),
        ({"recording_config": {"storage_config": {"type": "sftp", "auth_method": "KEY", "host": "h"}}}, "private_key"),
        ({"ai_config": {"transcription": {"language": "klingon"}}}, "language"),
    ],
)
def test_wrong_types_and_ranges_change_nothing(
    api: httpx.Client, meeting: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    assert_error(api.patch(f"/meetings/{meeting['id']}", json=body), 400, field)
    unchanged(api, meeting)


def test_oversized_body_is_413(api: httpx.Client, meeting: dict[str, Any]) -> None:
    big = {"title": "x" * (2 << 20)}
    assert_error(api.patch(f"/meetings/{meeting['id']}", json=big), 413, "larger than")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        yield b'{"title": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}'

    r = api.patch(f"/meetings/{meeting['id']}", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "larger than")
    unchanged(api, meeting)


@pytest.mark.parametrize(
    "path",
    [
        "/meetings/00000000-0000-4000-8000-000000000000",
        "/meetings/not-a-uuid",
        "/meetings/00000000-0000-4000-8000-000000000000/participants",
        "/webhooks/00000000-0000-4000-8000-000000000000",
        "/sessions/00000000-0000-4000-8000-000000000000",
        "/sessions/00000000-0000-4000-8000-000000000000/participants",
    ],
)
def test_unknown_ids_are_404(api: httpx.Client, path: str) -> None:
    assert_error(api.get(path), 404, "not found")


def test_unknown_participant_and_bad_paging(api: httpx.Client, meeting: dict[str, Any]) -> None:
    assert_error(api.get(f"/meetings/{meeting['id']}/participants/nope"), 404, "participant")
    assert_error(api.get("/meetings", params={"per_page": 0}), 400, "per_page")
    assert_error(api.get("/meetings", params={"per_page": 101}), 400, "per_page")
    assert_error(api.get("/meetings", params={"page_no": "two"}), 400, "page_no")
    assert_error(api.get("/meetings", params={"start_time": "yesterday"}), 400, "start_time")
    assert_error(api.get("/meetings", params={"start_time": "1700000000"}), 400, "start_time")


def test_participant_bad_input(api: httpx.Client, meeting: dict[str, Any]) -> None:
    path = f"/meetings/{meeting['id']}/participants"
    assert_error(api.post(path, json={"preset_name": "guest"}), 400, "custom_participant_id")
    assert_error(api.post(path, json={"custom_participant_id": "   ", "preset_name": "guest"}), 400)
    assert_error(api.post(path, json={"custom_participant_id": "a", "preset_name": "g", "name": ["x"]}), 400, "name")
    assert api.get(path).json()["paging"]["total_count"] == 0


def test_method_not_allowed_lists_allowed_methods(api: httpx.Client, meeting: dict[str, Any]) -> None:
    r = api.delete(f"/meetings/{meeting['id']}")
    assert_error(r, 405)
    assert set(r.headers["allow"].split(", ")) >= {"GET", "PUT", "PATCH"}


def test_storage_secrets_are_write_only(api: httpx.Client, server: Server) -> None:
    secrets = {"access_key": "AKIA-PLAINTEXT-ACCESS", "secret": "s3cr3t-PLAINTEXT-value"}
    r = api.post(
        "/meetings",
        json={
            "title": "with storage",
            "recording_config": {
                "storage_config": {"type": "aws", "bucket": "b", "region": "us-east-1", "path": "rec", **secrets}
            },
        },
    )
    assert r.status_code == 201, r.text
    meeting_id = r.json()["data"]["id"]
    sc = r.json()["data"]["recording_config"]["storage_config"]
    assert sc == {
        "type": "aws",
        "bucket": "b",
        "region": "us-east-1",
        "path": "rec",
        "auth_method": None,
        "host": None,
        "port": None,
        "username": None,
    }
    texts = [r.text, api.get(f"/meetings/{meeting_id}").text, api.get("/meetings").text]
    log = (server.data_dir / "server.log").read_text()
    for plain in secrets.values():
        assert all(plain not in t for t in texts) and plain not in log
        if server.database_url.startswith("sqlite"):
            raw = b"".join(p.read_bytes() for p in server.data_dir.glob("roomtape.db*"))
            assert plain.encode() not in raw


def test_nul_bytes_in_text_are_bad_input_on_every_backend(api: httpx.Client) -> None:
    # PostgreSQL cannot store NUL in text; the API refuses it everywhere (and says so in its OpenAPI schema).
    assert_error(api.get("/meetings", params={"search": "a\x00b"}), 400, "search")
    assert_error(api.post("/meetings", json={"title": "nul\x00title"}), 400, "title")
    assert api.get("/meetings", params={"search": "nul"}).json()["paging"]["total_count"] == 0
