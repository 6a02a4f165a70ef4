"""Checks of client-given storage locations, run when they are registered (400) and again before an upload.

- Directory-like fields (``bucketDirPath``, ``awsDirPath``, ``storage_config.path``) must be relative paths
  that stay under the storage root: no ``..`` segment, no absolute path (``/x``), no backslash, no
  percent-encoded separator or dot (``%2f``, ``%5c``, ``%2e``: another layer might decode them), no control
  character (:func:`safe_dir_path`).
- The hosts of a ``storage_config`` must resolve to addresses the outbound policy allows
  (:mod:`roomtape.webhooks.outbound`).
"""

from __future__ import annotations

from typing import Any

from roomtape.config import Settings
from roomtape.errors import InvalidInput
from roomtape.webhooks.outbound import OutboundPolicy, check_host, check_rtmp_url, storage_hosts


def safe_dir_path(value: str | None, field: str) -> str:
    """Normalise a client-given directory to ``a/b/c`` (``""`` for none), or raise ``InvalidInput``.

    Args:
        value: The path as given (a trailing ``/`` and empty or ``.`` segments are dropped).
        field: The field's name, for the error message.

    Returns:
        The normalised relative path.

    Raises:
        InvalidInput: The path could escape the root (see the module docstring).
    """
    if value is None or not value.strip():
        return ""
    text = value.strip()
    lowered = text.lower()
    if "\\" in text:
        raise InvalidInput(f"{field}: backslashes are not allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInput(f"{field}: control characters are not allowed")
    if any(code in lowered for code in ("%2f", "%5c", "%2e", "%00")):
        raise InvalidInput(f"{field}: percent-encoded separators or dots are not allowed")
    if text.startswith("/"):
        raise InvalidInput(f"{field}: must be a relative path, not an absolute one")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidInput(f"{field}: must not contain '..'")
    return "/".join(parts)


async def check_storage_config(settings: Settings, config: dict[str, Any] | None) -> None:
    """Refuse (``InvalidInput``) a plaintext ``storage_config`` with an unsafe ``path`` or a non-public host.

    Args:
        settings: The server settings (outbound policy).
        config: The ``storage_config`` with its secrets in clear (or sealed: only non-secret fields are read).
    """
    if not config:
        return
    safe_dir_path(config.get("path"), "storage_config.path")
    policy = OutboundPolicy.from_settings(settings)
    for host, port, what in storage_hosts(config):
        await check_host(policy, host, port, what)


async def check_recording_config(settings: Settings, body: Any) -> None:
    """Check a request body's ``recording_config`` before it is saved.

    :func:`check_storage_config` for its ``storage_config``; its ``live_streaming_config.rtmp_url`` must be
    rtmp(s) with a host the outbound policy allows.

    Args:
        settings: The server settings.
        body: A pydantic request model (a meeting's create/replace/update body); anything without a
            ``recording_config`` passes.
    """
    recording_config = getattr(body, "recording_config", None)
    storage = getattr(recording_config, "storage_config", None)
    if storage is not None:
        await check_storage_config(settings, storage.model_dump(exclude_none=True))
    # The RTMP URL a live_stream_on_start meeting will push to: refused now (400) rather than found bad when the
    # room opens, where the only answer left is an ERRORED livestream.
    rtmp_url = getattr(getattr(recording_config, "live_streaming_config", None), "rtmp_url", None)
    if rtmp_url:
        await check_rtmp_url(settings, rtmp_url)
