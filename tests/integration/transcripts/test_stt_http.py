"""The OpenAI-compatible backend against a real transcription server: the request it sends, the key, and every
way the server can fail (down, overloaded, refusing, answering garbage)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.contract.storage_servers import free_port
from tests.contract.stt_server import SttServer
from tests.speech import concatenate

from roomtape.config import Settings
from roomtape.transcripts.stt import OpenAITranscriptions, PocketSphinx, SttError, SttOptions, stt_backend
from roomtape.transcripts.stt.openai_compat import endpoint

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def server() -> Iterator[SttServer]:
    s = SttServer(api_key=KEY).start()
    yield s
    s.stop()


async def test_sends_openai_multipart_fields_and_bearer_key(server: SttServer) -> None:
    client = OpenAITranscriptions(server.url + "/v1", "whisper-1", KEY)
    audio, _ = concatenate(["good morning everyone"])
    try:
        heard = await client.transcribe(audio, SttOptions(language="en-US", keywords=("roomtape", "Opus")))
    finally:
        await client.aclose()
    assert heard.words and heard.backend == "openai/whisper-1"
    (req,) = server.requests
    assert req["authorization"] == f"Bearer {KEY}"
    fields = req["fields"]
    assert fields["model"] == ["whisper-1"]
    assert fields["response_format"] == ["verbose_json"]
    assert "word" in fields["timestamp_granularities[]"]
    assert fields["language"] == ["en"]
    assert fields["prompt"] == ["roomtape, Opus"]


async def test_refused_key_is_permanent_and_never_in_the_error(server: SttServer) -> None:
    wrong = "sk-wrong-key-that-the-server-echoes"
    client = OpenAITranscriptions(server.url, "whisper-1", wrong)
    try:
        with pytest.raises(SttError) as info:
            await client.transcribe(concatenate(["hello"])[0])
    finally:
        await client.aclose()
    assert not info.value.retryable
    assert "401" in info.value.message
    assert wrong not in info.value.message and wrong not in repr(client)


@pytest.mark.parametrize("mode", ["garbage", "wrong-json"])
async def test_garbage_answer_is_a_retryable_failure(server: SttServer, mode: str) -> None:
    server.mode = mode
    client = OpenAITranscriptions(server.url, "whisper-1", KEY)
    try:
        with pytest.raises(SttError) as info:
            await client.transcribe(concatenate(["hello"])[0])
    finally:
        await client.aclose()
    assert info.value.retryable


async def test_overloaded_server_is_retryable_and_then_answers(server: SttServer) -> None:
    server.fail_next = 1
    client = OpenAITranscriptions(server.url, "whisper-1", KEY)
    audio, _ = concatenate(["good morning everyone"])
    try:
        with pytest.raises(SttError) as info:
            await client.transcribe(audio)
        assert info.value.retryable and "503" in info.value.message
        assert (await client.transcribe(audio)).words
    finally:
        await client.aclose()


async def test_server_down_is_retryable() -> None:
    client = OpenAITranscriptions(f"http://127.0.0.1:{free_port()}", "whisper-1", KEY, timeout_secs=5)
    try:
        with pytest.raises(SttError) as info:
            await client.transcribe(concatenate(["hello"])[0])
    finally:
        await client.aclose()
    assert info.value.retryable and "unreachable" in info.value.message


def test_settings_choose_the_backend_and_hide_the_key() -> None:
    assert isinstance(stt_backend(Settings()), PocketSphinx)
    settings = Settings(stt_url="http://127.0.0.1:9/v1", stt_model="m", stt_api_key=KEY)
    backend = stt_backend(settings)
    assert isinstance(backend, OpenAITranscriptions) and backend.name == "openai/m"
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert endpoint("http://h:1") == endpoint("http://h:1/v1/") == "http://h:1/v1/audio/transcriptions"
    assert endpoint("https://h/openai/v1/audio/transcriptions") == "https://h/openai/v1/audio/transcriptions"
