"""LocalStorage.take_file: a hard link on the same file system, a copy across file systems, never half a file."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from roomtape.storage.base import TakesFiles
from roomtape.storage.local import LocalStorage
from roomtape.storage.signer import DownloadSigner

SIGNER = DownloadSigner("take-file-secret", "http://127.0.0.1:1")


def test_take_file_links_on_one_file_system(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "storage", SIGNER)
    assert isinstance(store, TakesFiles)
    data = os.urandom(300_001)
    src = tmp_path / "rec" / "composite.mp4"
    src.parent.mkdir()
    src.write_bytes(data)
    stat = asyncio.run(store.take_file(src, "app/rec/composite.mp4"))
    target = store.path_of("app/rec/composite.mp4")
    assert stat.size == len(data)
    assert target.stat().st_ino == src.stat().st_ino, "not linked: the bytes were copied"
    assert not list(target.parent.glob(".*.part"))
    src.unlink()  # what the uploader does once the upload is verified
    assert target.read_bytes() == data
    # Taking a file again overwrites the object (a retried upload).
    src.write_bytes(b"second")
    asyncio.run(store.take_file(src, "app/rec/composite.mp4"))
    assert target.read_bytes() == b"second"


def test_take_file_copies_across_file_systems(tmp_path: Path) -> None:
    # /dev/shm is a tmpfs: another file system than the test's temporary directory on the disk.
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        assert os.stat(other).st_dev != tmp_path.stat().st_dev
        store = LocalStorage(Path(other) / "storage", SIGNER)
        data = os.urandom(100_003)
        src = tmp_path / "track.webm"
        src.write_bytes(data)
        stat = asyncio.run(store.take_file(src, "app/s/p/video/track.webm"))
        target = store.path_of("app/s/p/video/track.webm")
        assert stat.size == len(data) and target.read_bytes() == data
        assert target.stat().st_ino != src.stat().st_ino or target.stat().st_dev != src.stat().st_dev
        src.unlink()
        assert target.read_bytes() == data
