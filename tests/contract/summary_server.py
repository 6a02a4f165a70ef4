"""A real OpenAI-compatible chat-completions server for tests: FastAPI + uvicorn on loopback.

It answers ``POST /v1/chat/completions`` in OpenAI's shape (``id``, ``object: chat.completion``, ``model``,
``choices[0].message{role, content}``, ``finish_reason``, ``usage``). Its "model" reads the transcript lines
of the last user message (``[mm:ss] Speaker: text``) and writes a summary from them: the speakers, the first
line, and every line with "will" as an action item — so a test can see the transcript really travelled.
Knobs for the failure tests: ``api_key`` (401 otherwise, echoing the header it got, as careless servers do),
``fail_next`` (that many 503s), ``mode`` (``garbage``: an HTML page with status 200; ``no-choices``: JSON
without ``choices``). Every request's JSON body and Authorization header are kept in ``requests``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from tests.contract.storage_servers import free_port, wait_port

_LINE = re.compile(r"^\[(\d+:)?\d\d:\d\d\] ([^:]+): (.*)$")


def write_summary(prompt: str) -> str:
    """The server's "model": a deterministic summary of the transcript in ``prompt``."""
    lines = [m for m in (_LINE.match(line) for line in prompt.splitlines()) if m]
    speakers = list(dict.fromkeys(m.group(2) for m in lines))
    out = [f"Meeting of {', '.join(speakers)}. It opened with: {lines[0].group(3)}" if lines else "Nothing was said."]
    actions = [f"- {m.group(2)}: {m.group(3)}" for m in lines if " will " in f" {m.group(3).lower()} "]
    out += ["Action items:", *actions] if actions else []
    return "\n".join(out)


@dataclass
class SummaryServer:
    api_key: str = ""
    fail_next: int = 0
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Response:
            body = await request.json()
            self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse(
                    {"error": {"message": f"bad key in {request.headers.get('authorization')}"}}, status_code=401
                )
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
            if self.mode == "garbage":
                return HTMLResponse("<html><body>502 upstream hiccup</body></html>")
            if self.mode == "no-choices":
                return JSONResponse({"object": "chat.completion", "choices": []})
            messages = body.get("messages") or []
            prompt = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
            content = write_summary(prompt)
            return JSONResponse(
                {
                    "id": f"chatcmpl-{time.time_ns()}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(content.split())},
                }
            )

        return app

    def start(self) -> SummaryServer:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None
