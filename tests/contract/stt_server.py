"""A real OpenAI-compatible transcription server for tests: FastAPI + uvicorn on loopback, running PocketSphinx.

It answers ``POST /v1/audio/transcriptions`` in OpenAI's ``verbose_json`` shape (``text``, ``language``,
``duration``, ``words``, ``segments``), so roomtape's HTTP backend is tested against a server that really
transcribes, not a mock of the client. Knobs for the failure tests: ``api_key`` (401 otherwise, echoing the
header it got, as careless servers do), ``fail_next`` (that many 503s), ``mode`` (``garbage``: an HTML page
with status 200; ``wrong-json``: JSON without ``text``). Every request's form fields are kept in ``requests``.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from tests.contract.storage_servers import free_port, wait_port

from roomtape.transcripts.stt import PocketSphinx, load_pcm


@dataclass
class SttServer:
    api_key: str = ""
    fail_next: int = 0
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._backend = PocketSphinx(in_process=True)  # its CPU counts in this process (bench/stt_accuracy.py)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/audio/transcriptions")
        async def transcriptions(request: Request) -> Response:
            form = await request.form()
            upload: Any = form.get("file")
            fields = {k: form.getlist(k) for k in form if k != "file"}
            self.requests.append({"fields": fields, "authorization": request.headers.get("authorization")})
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse(
                    {"error": {"message": f"bad key in {request.headers.get('authorization')}"}}, status_code=401
                )
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
            if self.mode == "garbage":
                return HTMLResponse("<html><body>502 upstream hiccup</body></html>")
            if self.mode == "wrong-json":
                return JSONResponse({"status": "ok"})
            if upload is None:
                return JSONResponse({"error": {"message": "file is required"}}, status_code=400)
            with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
                tmp.write(await upload.read())
                tmp.flush()
                pcm = await asyncio.to_thread(load_pcm, Path(tmp.name))
            heard = await self._backend.transcribe(pcm)
            words = [{"word": w.word, "start": w.start, "end": w.end} for w in heard.words]
            segments = (
                [{"id": 0, "start": words[0]["start"], "end": words[-1]["end"], "text": " " + heard.text}]
                if words
                else []
            )
            body: dict[str, Any] = {
                "task": "transcribe",
                "language": "english",
                "duration": pcm.duration,
                "text": heard.text,
                "segments": segments,
            }
            if "word" in fields.get("timestamp_granularities[]", []):
                body["words"] = words
            return JSONResponse(body)

        return app

    def start(self) -> SttServer:
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
