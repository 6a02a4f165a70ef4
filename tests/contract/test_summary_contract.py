"""One contract for every summarizer: the embedded extractive one and the OpenAI-compatible HTTP client
(against a real chat-completions server on loopback, see ``summary_server.py``), then the HTTP client's
failures: refused key (not retryable, key scrubbed), overload, garbage, unreachable (retryable)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from tests.contract.storage_servers import free_port
from tests.contract.summary_server import SummaryServer

from roomtape.config import Settings
from roomtape.transcripts.summary import (
    ExtractiveSummarizer,
    OpenAIChatSummarizer,
    Summarizer,
    SummaryError,
    TranscriptLine,
    summary_backend,
)

BACKENDS = ["extractive", "openai-compatible"]

MEETING = [
    TranscriptLine("Alice", 1.0, "Good morning everyone, thanks for joining the release planning."),
    TranscriptLine("Bob", 6.5, "The release candidate passed every integration test last night."),
    TranscriptLine("Alice", 12.0, "Then the release goes out on Friday after the integration review."),
    TranscriptLine("Carol", 20.2, "I will write the release notes tomorrow."),
    TranscriptLine("Bob", 31.9, "Great."),
]


@pytest.fixture(scope="module")
def summary_server() -> Iterator[SummaryServer]:
    server = SummaryServer().start()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
async def summarizer(request: pytest.FixtureRequest) -> AsyncIterator[Summarizer]:
    backend: Summarizer
    if request.param == "extractive":
        backend = ExtractiveSummarizer()
    else:
        server: SummaryServer = request.getfixturevalue("summary_server")
        backend = OpenAIChatSummarizer(server.url, "tiny-test-model")
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_summary_names_the_speakers_and_the_action_item(summarizer: Summarizer) -> None:
    summary = await summarizer.summarize(MEETING)
    assert summary.backend == summarizer.name and summary.backend
    for speaker in ("Alice", "Bob", "Carol"):
        assert speaker in summary.text
    assert "Action items:" in summary.text
    action_part = summary.text.split("Action items:", 1)[1]
    assert "Carol" in action_part and "I will write the release notes tomorrow" in action_part


async def test_summary_is_plain_text_from_this_transcript(summarizer: Summarizer) -> None:
    other = [TranscriptLine("Dana", 0.0, "We looked at the budget for the new office chairs.")]
    summary = await summarizer.summarize(other)
    assert "Dana" in summary.text and "Alice" not in summary.text
    assert "budget" in summary.text


async def test_empty_transcript_is_refused_for_good(summarizer: Summarizer) -> None:
    with pytest.raises(SummaryError) as err:
        await summarizer.summarize([])
    assert err.value.retryable is False


async def test_extractive_summary_says_what_it_is() -> None:
    summary = await ExtractiveSummarizer().summarize(MEETING)
    first = summary.text.splitlines()[0]
    assert "extractive" in first.lower() and "offline" in first.lower() and "not written by a language model" in first
    assert "[00:20] Carol: I will write the release notes tomorrow." in summary.text


async def test_http_backend_sends_the_transcript_in_openai_shape(summary_server: SummaryServer) -> None:
    summary_server.requests.clear()
    backend = OpenAIChatSummarizer(summary_server.url + "/v1", "tiny-test-model")
    try:
        await backend.summarize(MEETING)
    finally:
        await backend.aclose()
    (request,) = summary_server.requests
    body = request["body"]
    assert body["model"] == "tiny-test-model" and body["stream"] is False
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert (
        "[00:06] Bob: The release candidate passed every integration test last night." in body["messages"][1]["content"]
    )
    assert request["authorization"] is None  # no key configured: no header


async def test_refused_key_is_not_retryable_and_never_echoed(summary_server: SummaryServer) -> None:
    summary_server.api_key = "right-key"
    secret = "sk-wrong-secret-123"
    backend = OpenAIChatSummarizer(summary_server.url, "m", api_key=secret)
    try:
        with pytest.raises(SummaryError) as err:
            await backend.summarize(MEETING)
        assert err.value.retryable is False and "401" in err.value.message
        assert secret not in err.value.message and "***" in err.value.message
        assert secret not in repr(backend)
        good = OpenAIChatSummarizer(summary_server.url, "m", api_key="right-key")
        try:
            assert "Carol" in (await good.summarize(MEETING)).text
        finally:
            await good.aclose()
    finally:
        summary_server.api_key = ""
        await backend.aclose()


@pytest.mark.parametrize(
    ("mode", "fail_next", "reason"), [("ok", 1, "503"), ("garbage", 0, "not JSON"), ("no-choices", 0, "choices")]
)
async def test_overload_and_garbage_are_retryable(
    summary_server: SummaryServer, mode: str, fail_next: int, reason: str
) -> None:
    summary_server.mode, summary_server.fail_next = mode, fail_next
    backend = OpenAIChatSummarizer(summary_server.url, "m")
    try:
        with pytest.raises(SummaryError, match=reason) as err:
            await backend.summarize(MEETING)
        assert err.value.retryable is True
    finally:
        summary_server.mode, summary_server.fail_next = "ok", 0
        await backend.aclose()


async def test_unreachable_server_is_retryable() -> None:
    backend = OpenAIChatSummarizer(f"http://127.0.0.1:{free_port()}", "m", timeout_secs=5)
    try:
        with pytest.raises(SummaryError, match="unreachable") as err:
            await backend.summarize(MEETING)
        assert err.value.retryable is True
    finally:
        await backend.aclose()


def test_configuration_chooses_the_backend() -> None:
    assert isinstance(summary_backend(Settings()), ExtractiveSummarizer)
    chosen = summary_backend(Settings(summary_url="http://127.0.0.1:9/v1", summary_model="llama", summary_api_key="k"))
    assert isinstance(chosen, OpenAIChatSummarizer) and chosen.name == "openai-compatible/llama"
    assert "k" not in repr(Settings(summary_api_key="topsecret").summary_api_key)
