"""The OpenAI-compatible backend: ``POST /v1/audio/transcriptions`` on any server that speaks it.

whisper.cpp's server, faster-whisper-server / speaches, vLLM, OpenAI and Groq accept the same multipart
request: ``file``, ``model``, ``response_format=verbose_json`` and ``timestamp_granularities[]=word``. The
answer's ``words`` (``{word, start, end}`` in seconds) become the transcript's word timings; a server that
returns only ``segments`` gives segment-timed words (each segment's text spread over its span), one that returns
only ``text`` gives one untimed stretch.

Chosen by ``ROOMTAPE_STT_URL`` (the server's base URL, with or without ``/v1``), ``ROOMTAPE_STT_MODEL`` and
``ROOMTAPE_STT_API_KEY``. The key is sent as ``Authorization: Bearer`` and nowhere else: it is a ``SecretStr``
in the settings, never in an error message, a log line or an API answer.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
from pydantic import SecretStr

from roomtape.transcripts.stt.base import PcmAudio, SpokenWord, SttError, SttOptions, Transcription, clean_words

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
"""Answers after which the same request may succeed (overload, restarts, gateway time-outs)."""


def endpoint(url: str) -> str:
    """The transcriptions URL for a base URL given as ``http://host:port``, ``.../v1`` or the full path."""
    url = url.rstrip("/")
    if url.endswith("/audio/transcriptions"):
        return url
    if url.endswith("/v1"):
        return f"{url}/audio/transcriptions"
    return f"{url}/v1/audio/transcriptions"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _iso639_1(language: str) -> str:
    """``en-US`` → ``en``: OpenAI's ``language`` parameter is ISO 639-1."""
    return language.split("-")[0].lower()


def parse_verbose_json(body: Any, duration: float) -> tuple[str, list[SpokenWord], str | None]:
    """Text, words and language of a ``verbose_json`` answer.

    Raises:
        SttError: The answer is not a transcription (retryable: a server answering garbage is treated as
            failing, not as having heard nothing).
    """
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise SttError("the speech-to-text server's answer has no 'text'", retryable=True)
    words: list[SpokenWord] = []
    raw_words = body.get("words")
    if isinstance(raw_words, list) and raw_words:
        for raw in raw_words:
            if not isinstance(raw, dict) or not isinstance(raw.get("word"), str):
                raise SttError("the speech-to-text server's answer has a malformed word", retryable=True)
            start, end = _number(raw.get("start")), _number(raw.get("end"))
            if start is None or end is None:
                raise SttError("the speech-to-text server's answer has a word without times", retryable=True)
            words.append(SpokenWord(raw["word"], start, end, _number(raw.get("probability"))))
    elif isinstance(body.get("segments"), list):
        for seg in body["segments"]:
            if not isinstance(seg, dict):
                continue
            start, end = _number(seg.get("start")), _number(seg.get("end"))
            tokens = str(seg.get("text") or "").split()
            if start is None or end is None or not tokens:
                continue
            step = max(0.0, end - start) / len(tokens)
            words += [SpokenWord(t, start + i * step, start + (i + 1) * step) for i, t in enumerate(tokens)]
    elif body["text"].strip():
        words = [SpokenWord(body["text"].strip(), 0.0, duration)]
    language = body.get("language") if isinstance(body.get("language"), str) else None
    return body["text"].strip(), words, language


class OpenAITranscriptions:
    """The :class:`~roomtape.transcripts.stt.base.SpeechToText` backend for OpenAI-compatible servers.

    Args:
        url: Base URL of the server (``http://127.0.0.1:8000``, ``https://api.openai.com/v1``...).
        model: Model name the server knows (``whisper-1``, ``Systran/faster-whisper-small``...).
        api_key: Bearer token; empty sends no ``Authorization`` header (local servers).
        timeout_secs: Per-request time-out (a long segment takes a while on CPU servers).
        transport: An httpx transport (tests; production uses the default).
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key: SecretStr | str = "",
        timeout_secs: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = endpoint(url)
        self._model = model
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._client = httpx.AsyncClient(timeout=timeout_secs, transport=transport, follow_redirects=False)

    @property
    def name(self) -> str:
        """``openai/<model>``."""
        return f"openai/{self._model}"

    def __repr__(self) -> str:
        return f"OpenAITranscriptions(url={self._url!r}, model={self._model!r})"

    def _scrub(self, text: str) -> str:
        """``text`` with the key removed (a server may echo the request's headers in an error page)."""
        key = self._key.get_secret_value()
        return text.replace(key, "***") if key else text

    async def transcribe(self, audio: PcmAudio, options: SttOptions = SttOptions()) -> Transcription:
        """Send ``audio`` as a WAV file and read the words back.

        Raises:
            SttError: Unreachable, time-out, 408/429/5xx or an unreadable answer (retryable); any other
                refusal such as 401 or 400 (not retryable).
        """
        data: dict[str, str | list[str]] = {
            "model": self._model,
            "response_format": "verbose_json",
            "timestamp_granularities[]": ["word", "segment"],  # a list: the field is repeated
        }
        if options.language:
            data["language"] = _iso639_1(options.language)
        if options.keywords:
            data["prompt"] = ", ".join(options.keywords)
        headers = {"Accept": "application/json"}
        key = self._key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            resp = await self._client.post(
                self._url, data=data, files={"file": ("audio.wav", audio.wav(), "audio/wav")}, headers=headers
            )
        except httpx.HTTPError as exc:
            raise SttError(f"speech-to-text server unreachable: {type(exc).__name__}", retryable=True) from None
        if resp.status_code != 200:
            detail = self._scrub(resp.text[:200].strip())
            raise SttError(
                f"speech-to-text server answered {resp.status_code}: {detail}",
                retryable=resp.status_code in _RETRY_STATUS,
            )
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SttError("the speech-to-text server's answer is not JSON", retryable=True) from None
        text, words, language = parse_verbose_json(body, audio.duration)
        return Transcription(
            text=text,
            words=clean_words(words, audio.duration),
            duration=audio.duration,
            language=language,
            backend=self.name,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
