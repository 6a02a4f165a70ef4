"""Session summaries end to end on a real server (PostgreSQL): ``summarize_on_end``, RealtimeKit's
"generate summary" / "get session summary" (a signed, expiring plain-text download), ``meeting.summary``, the
dashboard's session page, and both backends: the embedded extractive one and an OpenAI-compatible server on
loopback that is overloaded once (retried with backoff) or down (the summary FAILED with the reason)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cloudflare import AsyncCloudflare
from tests.conftest import Server, start_server, stop_server
from tests.contract.storage_servers import free_port
from tests.contract.summary_server import SummaryServer
from tests.integration.signaling.signaling_helpers import SERVER_ENV, Api, outbox

from roomtape.agents import RoomClient

pytestmark = pytest.mark.timeout(120)

SAID = [
    ("alice", 1.0, "Welcome to the roadmap review, the mobile app ships in March."),
    ("bob", 5.0, "The mobile app beta had two thousand testers and the crash rate dropped."),
    ("alice", 9.0, "<script>alert('x')</script> is what the bug report said, the mobile app escapes it now."),
    ("bob", 14.0, "I will send the beta report to the board on Monday."),
    ("alice", 18.0, "Let's meet again next week."),
]


@pytest.fixture(scope="module")
def summary_server() -> Iterator[SummaryServer]:
    server = SummaryServer().start()
    yield server
    server.stop()


def make_server(tmp: Any, database_url: str, **env: str) -> Server:
    return start_server(tmp, database_url, {**SERVER_ENV, "ROOMTAPE_SUMMARY_BACKOFF_BASE_SECS": "0.05", **env})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_database_url: str) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("summary"), pg_database_url)
    try:
        yield srv
    finally:
        stop_server(srv)


async def meet_and_talk(api: Api, server: Server, **meeting: Any) -> tuple[str, str]:
    """Alice and Bob meet; what they say goes into the session's transcript; they leave (the session ends)."""
    meeting_id = api.meeting(title="roadmap", summarize_on_end=True, **meeting)
    ids = {}
    clients = []
    for name in ("alice", "bob"):
        pid, token = api.participant(meeting_id, name)
        ids[name] = pid
        client = RoomClient(server.base_url, token)
        await client.join()
        clients.append(client)
    session_id = clients[0].session_id
    assert session_id is not None
    events = [
        {
            "type": "conversation_item_added",
            "role": "user",
            "text": text,
            "participant_id": ids[who],
            "start": t,
            "end": t + 3,
        }
        for who, t, text in SAID
    ]
    async with httpx.AsyncClient(timeout=10) as http:
        stored = await http.post(
            f"{server.base_url}/v1/sessions/{session_id}/transcript",
            json=events,
            headers={"Authorization": f"Bearer {server.api_token}"},
        )
    assert stored.status_code == 201, stored.text
    for client in clients:
        await client.leave()
    return meeting_id, session_id


async def summary_answer(
    server: Server, api: Api, session_id: str, *, until: str, within: float = 30
) -> httpx.Response:
    """GET the session summary until the answer is ``until`` (``COMPLETED`` → 200, else 409 with that status)."""
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {server.api_token}"}) as http:
        while True:
            answer = await http.get(f"{api.base}/sessions/{session_id}/summary")
            if until == "COMPLETED" and answer.status_code == 200:
                return answer
            if answer.status_code == 409 and f"is {until}" in answer.json()["error"]["message"]:
                return answer
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"summary never {until}: {answer.status_code} {answer.text}")
            await asyncio.sleep(0.1)


async def dashboard_session(server: Server, session_id: str) -> str:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10, follow_redirects=True) as http:
        signed_in = await http.post(
            "/dashboard/signin",
            data={"api_token": server.api_token, "next": f"/dashboard/sessions/{session_id}"},
            headers={"Origin": server.base_url},
        )
        assert signed_in.status_code == 200, signed_in.text
        return signed_in.text


async def test_summarize_on_end_with_the_embedded_summarizer(server: Server) -> None:
    api = Api(server)
    meeting_id, session_id = await meet_and_talk(api, server)
    answer = await summary_answer(server, api, session_id, until="COMPLETED")
    data = answer.json()["data"]
    assert data["sessionId"] == session_id and data["backend"] == "extractive"
    assert set(data) == {"sessionId", "summaryDownloadUrl", "summaryDownloadUrlExpiry", "backend"}
    async with httpx.AsyncClient(timeout=10) as http:  # the signed URL is the only credential
        download = await http.get(data["summaryDownloadUrl"])
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/plain")
    text = download.text
    assert "not written by a language model" in text.splitlines()[0]
    assert "Speakers: alice, bob" in text
    actions = text.split("Action items:", 1)[1]
    assert "[00:14] bob: I will send the beta report to the board on Monday." in actions
    assert "[00:18] alice: Let's meet again next week." in actions
    assert "[00:05] bob: The mobile app beta had two thousand testers and the crash rate dropped." in text

    events = [(e, p) for e, p in await outbox(server, meeting_id) if e == "meeting.summary"]
    assert len(events) == 1
    payload = events[0][1]
    assert payload["meeting"]["sessionId"] == session_id and payload["meeting"]["status"] == "ENDED"
    assert payload["summary"] == text and payload["summaryBackend"] == "extractive"
    assert payload["transcriptLines"] == len(SAID)

    # The dashboard shows it; the markup someone said stays text.
    page = await dashboard_session(server, session_id)
    assert "I will send the beta report to the board on Monday." in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(" in page

    # The Cloudflare SDK reads the same; generating again (its POST) queues it and writes it again: a second
    # meeting.summary.
    ids = {"account_id": server.account_id, "app_id": server.app_id}
    async with AsyncCloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0) as cf:
        got = await cf.realtime_kit.sessions.get_session_summary(session_id, **ids)
        assert got.success and got.data is not None and got.data.session_id == session_id
        assert got.data.summary_download_url.startswith(server.base_url) and got.data.summary_download_url_expiry
        again = await cf.realtime_kit.sessions.generate_summary_of_transcripts(session_id, **ids)
        assert again.success and again.data is not None
        assert (again.data.session_id, again.data.status) == (session_id, "PENDING")
    await summary_answer(server, api, session_id, until="COMPLETED")
    for _ in range(100):
        if len([e for e, _ in await outbox(server, meeting_id) if e == "meeting.summary"]) == 2:
            break
        await asyncio.sleep(0.1)
    assert len([e for e, _ in await outbox(server, meeting_id) if e == "meeting.summary"]) == 2

    # A late item (REST ingest after the end) writes it again, with the new line.
    late = {"type": "conversation_item_added", "role": "user", "text": "I will book the venue for the launch party.",
            "participant_id": payload["meeting"]["id"], "start": 25.0, "end": 27.0}  # fmt: skip
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {server.api_token}"}) as http:
        stored = await http.post(f"{server.base_url}/v1/sessions/{session_id}/transcript", json=late)
    assert stored.status_code == 201, stored.text
    for _ in range(100):
        summaries = [p for e, p in await outbox(server, meeting_id) if e == "meeting.summary"]
        if len(summaries) == 3:
            break
        await asyncio.sleep(0.1)
    assert len(summaries) == 3
    assert "I will book the venue for the launch party." in summaries[-1]["summary"].split("Action items:")[1]


async def test_without_summarize_on_end_there_is_no_summary(server: Server) -> None:
    api = Api(server)
    meeting_id = api.meeting(title="no summary")
    _, token = api.participant(meeting_id, "solo")
    client = RoomClient(server.base_url, token)
    await client.join()
    session_id = client.session_id
    await client.leave()
    await asyncio.sleep(1.0)  # past the keep-alive: the session ended
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {server.api_token}"}) as http:
        answer = await http.get(f"{api.base}/sessions/{session_id}/summary")
        assert answer.status_code == 404 and "summarize_on_end" in answer.json()["error"]["message"]
        # Asked for, with no transcript: FAILED with the reason, nothing sent.
        assert (await http.post(f"{api.base}/sessions/{session_id}/summary")).status_code == 202
    failed = await summary_answer(server, api, str(session_id), until="FAILED")
    assert "no transcript to summarize" in failed.json()["error"]["message"]
    assert [e for e, _ in await outbox(server, meeting_id) if e == "meeting.summary"] == []


async def test_openai_compatible_backend_overloaded_once(
    tmp_path_factory: pytest.TempPathFactory, pg_database_url: str, summary_server: SummaryServer
) -> None:
    srv = make_server(
        tmp_path_factory.mktemp("summary-http"),
        pg_database_url,
        ROOMTAPE_SUMMARY_URL=summary_server.url + "/v1",
        ROOMTAPE_SUMMARY_MODEL="tiny-test-model",
        ROOMTAPE_SUMMARY_API_KEY="sk-test-key-42",
    )
    try:
        summary_server.api_key, summary_server.fail_next = "sk-test-key-42", 1
        summary_server.requests.clear()
        api = Api(srv)
        _, session_id = await meet_and_talk(api, srv)
        answer = await summary_answer(srv, api, session_id, until="COMPLETED")
        assert answer.json()["data"]["backend"] == "openai-compatible/tiny-test-model"
        assert len(summary_server.requests) == 2  # a 503, then the answer
        assert all(r["authorization"] == "Bearer sk-test-key-42" for r in summary_server.requests)
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(answer.json()["data"]["summaryDownloadUrl"])).text
        assert text.startswith("Meeting of alice, bob. It opened with: Welcome to the roadmap review")
        assert "- bob: I will send the beta report to the board on Monday." in text
        assert "sk-test-key-42" not in (srv.data_dir / "server.log").read_text()
    finally:
        summary_server.api_key, summary_server.fail_next = "", 0
        stop_server(srv)


async def test_backend_down_marks_the_summary_failed(
    tmp_path_factory: pytest.TempPathFactory, pg_database_url: str
) -> None:
    srv = make_server(
        tmp_path_factory.mktemp("summary-down"),
        pg_database_url,
        ROOMTAPE_SUMMARY_URL=f"http://127.0.0.1:{free_port()}",
        ROOMTAPE_SUMMARY_MAX_ATTEMPTS="3",
        ROOMTAPE_SUMMARY_TIMEOUT_SECS="2",
    )
    try:
        api = Api(srv)
        _, session_id = await meet_and_talk(api, srv)
        failed = await summary_answer(srv, api, session_id, until="FAILED")
        assert "unreachable" in failed.json()["error"]["message"]
        page = await dashboard_session(srv, session_id)
        assert "Summary failed after 3 attempts" in page
    finally:
        stop_server(srv)
