"""Small generated files (a session's chat export, its summary) put in the default storage and signed.

RealtimeKit answers "get session chat" and "get session summary" with a download URL that expires, not the
content. roomtape writes the file to the server's default storage under
``{prefix}/{app_id}/{session_id}/{kind}/{file}`` and returns that backend's signed URL: presigned for S3,
GCS and Azure, roomtape's own ``/downloads`` URL (``storage.signer``) for local and SFTP storage. The file is
written again on every request, so the URL always serves what is stored now.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from roomtape.config import Settings
from roomtape.storage.base import SignedUrl, join_key
from roomtape.storage.registry import default_storage
from roomtape.storage.signer import DownloadSigner

__all__ = ["export_key", "publish_export"]


def export_key(prefix: str, app_id: str, session_id: str, kind: str, file_name: str) -> str:
    """Where a session's export lives in the default storage."""
    return join_key(prefix, app_id, session_id, kind, file_name)


async def publish_export(
    settings: Settings,
    signer: DownloadSigner,
    *,
    app_id: str,
    session_id: str,
    kind: str,
    file_name: str,
    content: bytes,
    expires_in: int,
) -> SignedUrl:
    """Store ``content`` as the session's ``kind`` export and return a signed URL to it.

    Args:
        settings: Server settings (the default storage).
        signer: Signs roomtape's own download URLs (local, SFTP).
        app_id: The session's app.
        session_id: The session.
        kind: ``chat`` or ``summary``.
        file_name: E.g. ``chat.csv``.
        content: The file.
        expires_in: Seconds the URL stays valid.

    Returns:
        The signed URL and its expiry.
    """
    backend, prefix = default_storage(settings, signer)
    key = export_key(prefix, app_id, session_id, kind, file_name)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix="export-") as tmp:
            path = Path(tmp) / file_name
            path.write_bytes(content)
            await backend.put_file(path, key)
        return await backend.signed_url(key, expires_in)
    finally:
        await backend.close()
