"""Typed settings, read once from ``ROOMTAPE_*`` environment variables and an optional TOML file.

Precedence (highest first): explicit keyword arguments (the CLI's flags), environment variables,
the TOML file named by ``ROOMTAPE_CONFIG`` (or ``./roomtape.toml`` when it exists), then defaults.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SECRET_KEY_FILE = "secret.key"


def _config_file() -> Path | None:
    named = os.environ.get("ROOMTAPE_CONFIG")
    if named:
        return Path(named)
    default = Path("roomtape.toml")
    return default if default.is_file() else None


class Settings(BaseSettings):
    """Server configuration. Every field can be set as ``ROOMTAPE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ROOMTAPE_", extra="ignore")

    data_dir: Path = Path("data")
    """Where the SQLite database, the secret key and local recordings live."""

    database_url: str = ""
    """SQLAlchemy async URL. Empty means ``sqlite+aiosqlite:///<data_dir>/roomtape.db``;
    ``postgresql+asyncpg://user@host/db`` selects PostgreSQL."""

    host: str = "127.0.0.1"
    """Interface ``roomtape serve`` binds to."""

    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port ``roomtape serve`` listens on."""

    public_url: str = ""
    """Base URL clients reach the server at (used in join links and download URLs).
    Empty means ``http://<host>:<port>``."""

    secret_key: str = ""
    """Key for signing join tokens and URLs and for encrypting stored secrets. Empty means: read
    ``<data_dir>/secret.key``, creating it with a random key on first start."""

    participant_token_ttl_secs: int = Field(default=24 * 3600, ge=60)
    """Lifetime of a participant join token."""

    signin_link_ttl_secs: int = Field(default=15 * 60, ge=1, le=24 * 3600)
    """Lifetime of the one-time dashboard sign-in link ``roomtape serve`` prints for the demo app."""

    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest JSON request body the API accepts; larger bodies get 413."""

    session_keep_alive_scale: float = Field(default=1.0, gt=0)
    """Factor applied to every meeting's ``session_keep_alive_time_in_secs`` before a session with nobody in it
    ends. 1 in production; tests set e.g. 0.01 so a 60 s keep-alive passes in 0.6 s."""

    recording_max_seconds_scale: float = Field(default=1.0, gt=0, le=1.0)
    """Factor applied to a recording's ``max_seconds`` before the timer stops it. 1 in production (the API still
    takes 60..86400); tests set e.g. 0.05 so a 60 s limit stops the recording after 3 s."""

    live_composite: bool = True
    """Render a meeting recording's composite while it records (``roomtape.recording.live``: a process per
    recording, following the track files), so that at the stop only the last seconds are left. False: render it
    from the files after the stop. Channel layouts with a channel per participant are always rendered after."""

    live_composite_lag_secs: float = Field(default=3.0, ge=1.0, le=60.0)
    """How far behind the wall clock the live render stays: every frame up to there is on disk (WebM clusters
    are flushed within 0.5 s) and segment timing from RTCP sender reports is known."""

    ice_host_addresses: str = ""
    """Comma-separated local addresses to gather ICE host candidates on (e.g. ``127.0.0.1`` for loopback-only
    tests, or the LAN address of a multi-homed host). Empty means every interface but loopback."""

    max_upload_bytes: int = Field(default=512 << 20, ge=1024)
    """Largest upload (LiveKit Agents' observability recording) the API accepts; larger ones get 413."""

    create_demo_app: bool = False
    """Create a demo app (and print its credentials) on start when the database has no app."""

    storage_url: str = ""
    """Server-wide default storage for recordings without their own ``storage_config``: empty (a directory
    under the data dir), ``file:///dir``, ``s3://bucket/prefix?region=&endpoint=&path_style=``,
    ``gcs://bucket``, ``azure://account@container`` or ``sftp://user@host:port/dir`` (see
    ``roomtape.storage.registry``)."""

    storage_access_key: str = ""
    """Access key for ``storage_url`` (S3); empty means the SDK's default credential chain."""

    storage_secret: str = ""
    """Secret for ``storage_url``: S3 secret key, Azure account key, GCS service-account JSON or SFTP password."""

    storage_private_key: str = ""
    """SSH private key for an ``sftp://`` ``storage_url`` (``storage_secret`` is then its passphrase)."""

    spool_url: str = ""
    """Where track files wait between the media node that writes them and the job that renders and uploads
    them, in the forms of ``storage_url`` (e.g. ``s3://roomtape-spool/nodes?endpoint=http://minio:9000``).
    Empty: the data directory itself, so jobs must run where the files were written (one host, or a shared
    data directory). Set it when ``roomtape worker`` runs on other hosts (see ``roomtape.recording.spool``)."""

    spool_access_key: str = ""
    """Access key for ``spool_url`` (S3); empty means the SDK's default credential chain."""

    spool_secret: str = ""
    """Secret for ``spool_url``, as ``storage_secret`` is for ``storage_url``."""

    segment_max_seconds: float = Field(default=0.0, ge=0)
    """Close a track's segment file after this many seconds and start the next one (video: at the next
    keyframe, asked for then), so the spool receives a long meeting in pieces while it runs. 0: a segment
    only ends at a mute, a gap or the stop."""

    download_url_ttl_secs: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    """Lifetime of ``download_url``/``audio_download_url`` (S3 presigned URLs allow at most 7 days)."""

    broker_url: str = ""
    """Distributed jobs: ``redis://host:6379/0`` runs jobs on ``roomtape worker`` processes through a
    Redis stream (taskiq). Empty: jobs run inside the server process."""

    broker_queue: str = "roomtape:jobs"
    """Name of the Redis stream jobs are queued on (one per deployment)."""

    role: Literal["all", "api", "media"] = "all"
    """What ``roomtape serve`` runs: ``all`` (API, signaling and rooms in one process, the default), ``api``
    (HTTP API, dashboard and the signaling entry; rooms live on media nodes) or ``media`` (holds rooms; the
    api node forwards signaling and room control to it). ``api`` and ``media`` need ``cluster_url``."""

    media_workers: int = Field(default=0, ge=0, le=256)
    """``roomtape serve`` spawns this many ``media`` processes on this host (ports ``port+1`` ...) and
    serves as their ``api`` node itself. 0: none (the process is what ``role`` says)."""

    cluster_url: str = ""
    """Redis URL of the node registry and room placement (``redis://host:6379/0``). Empty: one process holds
    every room (in-process placement)."""

    cluster_prefix: str = "roomtape:cluster"
    """Prefix of the registry's Redis keys (one per deployment)."""

    node_url: str = ""
    """URL other nodes reach this node's HTTP server at (signaling and control are forwarded there). Empty
    means ``http://<host>:<port>``."""

    node_ttl_secs: float = Field(default=6.0, ge=1.0, le=300.0)
    """A node that has not heartbeated for this long is dead: its rooms are marked lost and its recordings
    move on (``INTERNAL_ERROR``). Nodes heartbeat every quarter of it."""

    webhook_max_attempts: int = Field(default=22, ge=1)
    """Delivery attempts per event and URL before it is marked dead (with the default backoff: about 25.5 hours)."""

    webhook_backoff_base_secs: float = Field(default=1.0, gt=0)
    """First retry delay; each next one doubles, up to ``webhook_backoff_max_secs``."""

    webhook_backoff_max_secs: float = Field(default=3 * 3600.0, gt=0)
    """Longest delay between two delivery attempts."""

    broker_claim_idle_ms: int = Field(default=30_000, ge=100)
    """Distributed jobs: a job message nobody has heartbeated for this long (its worker died) is claimed and
    run by another worker. Running workers heartbeat their messages every third of it."""

    broker_lock_ms: int = Field(default=30_000, ge=100)
    """Distributed jobs: lifetime of the per-recording job lock and the webhook dispatcher lease (refreshed
    every third of it while held), i.e. how long a dead worker can keep another from taking over."""

    outbound_allow_private: bool = False
    """Let webhook URLs and storage hosts resolve to private, loopback, link-local or otherwise non-public
    addresses. Off: such targets are refused (400 when registered, and again when connecting)."""

    outbound_allow_cidrs: str = ""
    """Comma-separated networks (e.g. ``10.1.2.0/24,127.0.0.1/32``) that webhook URLs and storage hosts may
    resolve to even though they are not public."""

    stt_url: str = ""
    """Speech-to-text: base URL of an OpenAI-compatible ``/v1/audio/transcriptions`` server (whisper.cpp,
    faster-whisper-server, OpenAI, Groq...). Empty: the embedded offline PocketSphinx backend."""

    stt_model: str = "whisper-1"
    """Model name sent to ``stt_url``."""

    stt_api_key: SecretStr = SecretStr("")
    """Bearer token for ``stt_url`` (write-only: never logged, printed or returned)."""

    stt_timeout_secs: float = Field(default=120.0, gt=0)
    """Time-out of one request to ``stt_url``."""

    stt_max_attempts: int = Field(default=6, ge=1)
    """Attempts per audio segment before its transcription is marked failed (a backend that is down or
    answers garbage is retried with backoff)."""

    stt_backoff_base_secs: float = Field(default=2.0, gt=0)
    """First retry delay of a failed transcription; each next one doubles (2, 4, 8, 16, 32 s by default)."""

    summary_url: str = ""
    """Summaries: base URL of an OpenAI-compatible ``/v1/chat/completions`` server (OpenAI, Groq, vLLM,
    llama.cpp, Ollama...). Empty: the embedded offline extractive summarizer."""

    summary_model: str = "gpt-4o-mini"
    """Model name sent to ``summary_url``."""

    summary_api_key: SecretStr = SecretStr("")
    """Bearer token for ``summary_url`` (write-only: never logged, printed or returned)."""

    summary_timeout_secs: float = Field(default=120.0, gt=0)
    """Time-out of one request to ``summary_url``."""

    summary_max_attempts: int = Field(default=5, ge=1)
    """Attempts at a session's summary before it is marked failed (a backend that is down or answers
    garbage is retried with backoff)."""

    summary_backoff_base_secs: float = Field(default=2.0, gt=0)
    """First retry delay of a failed summary; each next one doubles."""

    transcribe_all_meetings: bool = False
    """Transcribe the recorded audio of every meeting, as if each had ``transcribe_on_end`` set."""

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add the optional TOML file below the environment."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        """The database URL with the SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'roomtape.db').resolve()}"

    @property
    def resolved_public_url(self) -> str:
        """The public base URL without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def resolved_node_url(self) -> str:
        """The URL other nodes forward signaling and room control to, without a trailing slash."""
        if self.node_url:
            return self.node_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    def resolved_secret_key(self) -> str:
        """The configured secret key, or the one kept in the data dir (created on first use)."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / SECRET_KEY_FILE
        if path.is_file():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once must not both write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return key


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; ``overrides`` (e.g. CLI flags) win over the environment. ``None`` is ignored."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
