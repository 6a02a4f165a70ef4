"""Choosing a storage backend: per recording (``storage_config``), by VideoSDK path, or the server default.

Order, first match wins:

1. the recording's RealtimeKit ``storage_config`` (seed 004: ``type`` aws | digitalocean | gcs | azure |
   sftp, ``bucket``, ``region``, ``path``, ``access_key``, ``secret``, ``host``, ``port``, ``username``,
   ``auth_method``, ``password``, ``private_key``). Its secrets arrive sealed (``domain.secretbox``) and are
   opened here and nowhere else. roomtape extensions: ``endpoint`` (an S3/GCS/Azure URL, e.g. MinIO or an
   emulator) and ``path_style`` (S3 path-style addressing).
2. the server's default storage (``ROOMTAPE_STORAGE_URL``), under the recording's VideoSDK
   ``bucket_dir_path`` (``bucketDirPath``/``awsDirPath``) or ``<app id>`` when it has none.

``ROOMTAPE_STORAGE_URL`` forms (credentials from ``ROOMTAPE_STORAGE_ACCESS_KEY`` / ``ROOMTAPE_STORAGE_SECRET``,
never in the URL):

- empty: the directory ``<data_dir>/storage``; ``file:///abs/dir``: that directory
- ``s3://bucket/prefix?region=eu-west-1&endpoint=http://host:9000&path_style=true``
- ``gcs://bucket/prefix?endpoint=...`` (secret: service-account JSON)
- ``azure://account@container/prefix?endpoint=...`` (secret: account key)
- ``sftp://user@host:22/prefix`` (secret: password; or ``ROOMTAPE_STORAGE_PRIVATE_KEY``)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from roomtape.config import Settings
from roomtape.domain.secretbox import SecretBox
from roomtape.errors import InvalidInput
from roomtape.storage.base import StorageBackend, join_key
from roomtape.storage.signer import DownloadSigner

DEFAULT_SCOPE = "default"
RECORDING_SCOPE_PREFIX = "rec-"


@dataclass
class StorageChoice:
    """A backend and the key prefix a recording's files go under."""

    backend: StorageBackend
    """Where the files go."""
    prefix: str
    """Key prefix (may be empty)."""
    scope: str
    """Scope of roomtape-signed download URLs (``default`` or ``rec-<recording id>``)."""

    def key(self, relative: str) -> str:
        """The full key of a file at ``relative`` under the prefix."""
        return join_key(self.prefix, relative)


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def build_backend(config: dict[str, Any], *, signer: DownloadSigner, scope: str, data_dir: Path) -> StorageBackend:
    """A backend from a plaintext ``storage_config`` (secrets already opened)."""
    kind = config.get("type") or "local"
    if kind == "local":
        from roomtape.storage.local import LocalStorage

        return LocalStorage(Path(config.get("root") or data_dir / "storage"), signer, scope)
    if kind in ("aws", "digitalocean", "s3"):
        from roomtape.storage.s3 import S3Storage

        region = config.get("region") or None
        endpoint = config.get("endpoint") or None
        if kind == "digitalocean" and not endpoint:
            endpoint = f"https://{region or 'nyc3'}.digitaloceanspaces.com"
        return S3Storage(
            _need(config, "bucket"),
            region=region,
            endpoint_url=endpoint,
            access_key=config.get("access_key") or None,
            secret_key=config.get("secret") or None,
            path_style=_truthy(config.get("path_style", False)),
        )
    if kind == "gcs":
        from roomtape.storage.gcs import GCSStorage

        return GCSStorage(
            _need(config, "bucket"),
            service_account_json=config.get("secret") or None,
            endpoint=config.get("endpoint") or None,
        )
    if kind == "azure":
        from roomtape.storage.azure import AzureStorage

        return AzureStorage(
            _need(config, "access_key"),
            _need(config, "secret"),
            _need(config, "bucket"),
            endpoint=config.get("endpoint") or None,
        )
    if kind == "sftp":
        from roomtape.storage.sftp import SFTPStorage

        method = config.get("auth_method") or ("KEY" if config.get("private_key") else "PASSWORD")
        return SFTPStorage(
            _need(config, "host"),
            port=int(config.get("port") or 22),
            username=_need(config, "username"),
            signer=signer,
            scope=scope,
            password=config.get("password") or None,
            private_key=_need(config, "private_key") if method == "KEY" else None,
        )
    raise InvalidInput(f"unknown storage type {kind!r}")


def _need(config: dict[str, Any], field: str) -> str:
    value = config.get(field)
    if not value:
        raise InvalidInput(f"storage_config of type {config.get('type')!r} needs {field}")
    return str(value)


def config_from_url(settings: Settings) -> dict[str, Any]:
    """The server default storage as a plaintext ``storage_config`` (plus ``root``/``prefix``)."""
    if not settings.storage_url:
        return {"type": "local", "root": str(settings.data_dir / "storage")}
    return parse_storage_url(
        settings.storage_url,
        access_key=settings.storage_access_key,
        secret=settings.storage_secret,
        private_key=settings.storage_private_key,
        setting="ROOMTAPE_STORAGE_URL",
    )


def parse_storage_url(
    url: str, *, access_key: str = "", secret: str = "", private_key: str = "", setting: str
) -> dict[str, Any]:
    """A plaintext ``storage_config`` (plus ``root``/``prefix``) from a storage URL of the forms above.

    Args:
        url: The URL (not empty).
        access_key: Its access key (S3).
        secret: Its secret (S3 secret key, Azure account key, GCS service-account JSON, SFTP password).
        private_key: SSH private key for ``sftp://``.
        setting: The setting's name, for the error message.

    Raises:
        InvalidInput: The scheme is unknown.
    """
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    prefix = unquote(parts.path).strip("/")
    secrets = {"access_key": access_key or None, "secret": secret or None}
    if parts.scheme == "file":
        return {"type": "local", "root": unquote(parts.path)}
    if parts.scheme == "s3":
        return {"type": "aws", "bucket": parts.hostname, "prefix": prefix, **query, **secrets}
    if parts.scheme == "gcs":
        return {"type": "gcs", "bucket": parts.hostname, "prefix": prefix, **query, "secret": secrets["secret"]}
    if parts.scheme == "azure":
        return {
            "type": "azure",
            "access_key": unquote(parts.username or ""),
            "bucket": parts.hostname,
            "prefix": prefix,
            "secret": secrets["secret"],
            **query,
        }
    if parts.scheme == "sftp":
        return {
            "type": "sftp",
            "host": parts.hostname,
            "port": parts.port or 22,
            "username": unquote(parts.username or ""),
            "prefix": prefix,
            "password": secret or None,
            "private_key": private_key or None,
            "auth_method": "KEY" if private_key else "PASSWORD",
        }
    raise InvalidInput(f"{setting} has an unknown scheme {parts.scheme!r}")


def default_storage(settings: Settings, signer: DownloadSigner) -> tuple[StorageBackend, str]:
    """The server-wide default backend and its key prefix."""
    config = config_from_url(settings)
    backend = build_backend(config, signer=signer, scope=DEFAULT_SCOPE, data_dir=settings.data_dir)
    return backend, str(config.get("prefix") or "")


def storage_for(
    settings: Settings,
    box: SecretBox,
    signer: DownloadSigner,
    *,
    recording_id: str,
    app_id: str,
    storage_config: dict[str, Any] | None,
    bucket_dir_path: str | None = None,
) -> StorageChoice:
    """The storage of one recording (see the module docstring for the order)."""
    if storage_config and storage_config.get("type"):
        plain = box.open_fields(storage_config)
        scope = RECORDING_SCOPE_PREFIX + recording_id
        backend = build_backend(plain, signer=signer, scope=scope, data_dir=settings.data_dir)
        prefix = join_key(plain.get("path")) if plain.get("path") else ""
        return StorageChoice(backend, prefix, scope)
    backend, base = default_storage(settings, signer)
    sub = bucket_dir_path or app_id
    return StorageChoice(backend, join_key(base, sub), DEFAULT_SCOPE)
