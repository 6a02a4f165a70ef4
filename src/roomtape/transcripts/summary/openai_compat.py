"""The OpenAI-compatible summarizer: ``POST /v1/chat/completions`` on any server that speaks it.

OpenAI, Groq, vLLM, llama.cpp's server, Ollama (``/v1``) and LocalAI accept the same request: ``model`` and
``messages`` (a system prompt, then the transcript as ``[mm:ss] Speaker: text`` lines). The answer's
``choices[0].message.content`` is the summary.

Chosen by ``ROOMTAPE_SUMMARY_URL`` (base URL, with or without ``/v1``), ``ROOMTAPE_SUMMARY_MODEL`` and
``ROOMTAPE_SUMMARY_API_KEY``. The key is sent as ``Authorization: Bearer`` and nowhere else: a ``SecretStr`` in
the settings, scrubbed from error messages, never logged or returned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import httpx
from pydantic import SecretStr

from roomtape.transcripts.summary.base import Summary, SummaryError, TranscriptLine, clock

__all__ = ["MAX_TRANSCRIPT_CHARS", "SYSTEM_PROMPT", "OpenAIChatSummarizer", "endpoint", "transcript_prompt"]

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
"""Answers after which the same request may succeed (overload, restarts, gateway time-outs)."""

SYSTEM_PROMPT: Final = (
    "You summarize meeting transcripts. Write plain text, no markup: a short paragraph of what was discussed "
    "and decided, then a line 'Action items:' followed by one '- ' line per action item with who owns it. "
    "Use only what the transcript says."
)

MAX_TRANSCRIPT_CHARS: Final = 200_000
"""Transcript characters sent at most (the newest are dropped past it, with a note): well inside the context
of current models, and a bound on the request size."""


def endpoint(url: str) -> str:
    """The chat-completions URL for a base URL given as ``http://host:port``, ``.../v1`` or the full path."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return f"{url}/chat/completions"
    return f"{url}/v1/chat/completions"


def transcript_prompt(lines: Sequence[TranscriptLine]) -> str:
    """The user message: one ``[mm:ss] Speaker: text`` line per transcript line, bounded in size."""
    out: list[str] = []
    size = 0
    for line in lines:
        text = f"{clock(line.start)} {line.speaker}: {' '.join(line.text.split())}"
        if size + len(text) > MAX_TRANSCRIPT_CHARS:
            out.append("(transcript cut here: too long)")
            break
        out.append(text)
        size += len(text) + 1
    return "Transcript:\n" + "\n".join(out)


def parse_completion(body: Any) -> str:
    """The summary text in a chat-completions answer.

    Raises:
        SummaryError: (retryable) the answer is not a completion with text.
    """
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise SummaryError("the summary server's answer has no choices[0].message.content", retryable=True) from None
    if not isinstance(content, str) or not content.strip():
        raise SummaryError("the summary server's answer is empty", retryable=True)
    return content.strip()


class OpenAIChatSummarizer:
    """The :class:`~roomtape.transcripts.summary.base.Summarizer` for OpenAI-compatible servers.

    Args:
        url: Base URL of the server (``http://127.0.0.1:8080``, ``https://api.openai.com/v1``...).
        model: Model name the server knows.
        api_key: Bearer token; empty sends no ``Authorization`` header (local servers).
        timeout_secs: Per-request time-out (CPU servers take a while on long transcripts).
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
        """``openai-compatible/<model>``."""
        return f"openai-compatible/{self._model}"

    def __repr__(self) -> str:
        return f"OpenAIChatSummarizer(url={self._url!r}, model={self._model!r})"

    def _scrub(self, text: str) -> str:
        key = self._key.get_secret_value()
        return text.replace(key, "***") if key else text

    async def summarize(self, lines: Sequence[TranscriptLine]) -> Summary:
        """Send the transcript and read the summary back.

        Raises:
            SummaryError: Unreachable, time-out, 408/429/5xx or an unreadable answer (retryable); any other
                refusal such as 401 or 404 (not retryable); an empty transcript (not retryable).
        """
        if not lines:
            raise SummaryError("the transcript has nothing to summarize", retryable=False)
        request = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": transcript_prompt(lines)},
            ],
            "temperature": 0.2,
            "stream": False,
        }
        headers = {"Accept": "application/json"}
        key = self._key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            resp = await self._client.post(self._url, json=request, headers=headers)
        except httpx.HTTPError as exc:
            raise SummaryError(f"summary server unreachable: {type(exc).__name__}", retryable=True) from None
        if resp.status_code != 200:
            detail = self._scrub(resp.text[:200].strip())
            raise SummaryError(
                f"summary server answered {resp.status_code}: {detail}", retryable=resp.status_code in _RETRY_STATUS
            )
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SummaryError("the summary server's answer is not JSON", retryable=True) from None
        return Summary(text=self._scrub(parse_completion(body)), backend=self.name)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
