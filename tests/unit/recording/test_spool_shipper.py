"""The spool shipper's own logic: order, retries while the spool is down, a manifest sent again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from roomtape.errors import Unavailable
from roomtape.recording.spool import Shipper, spool_key, spooled_files
from roomtape.storage.base import ObjectStat
from roomtape.storage.local import LocalStorage
from roomtape.storage.signer import DownloadSigner


class FlakyStorage(LocalStorage):
    """A local directory that refuses the next ``down`` uploads, as a spool in an outage would."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, DownloadSigner("k" * 32, "http://x"))
        self.down = 0
        self.puts: list[str] = []

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        if self.down:
            self.down -= 1
            raise Unavailable("spool down")
        self.puts.append(key)
        return await super().put_file(local_path, key)


async def _drained(shipper: Shipper, within: float = 10.0) -> None:
    for _ in range(int(within / 0.02)):
        if not shipper.pending:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still queued: {shipper.pending}")


async def test_segments_are_sent_in_order_and_retried_while_the_spool_is_down(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    directory = base / "sess" / "part" / "audio"
    directory.mkdir(parents=True)
    (directory / "audio-0001.webm").write_bytes(b"a" * 100)
    (directory / "manifest.json").write_text('{"v": 1}')
    spool = FlakyStorage(tmp_path / "spool")
    spool.down = 3
    shipper = Shipper((spool, "nodes"))
    try:
        shipper.ship("r1", base, ["sess/part/audio/audio-0001.webm", "sess/part/audio/manifest.json"])
        await _drained(shipper)
        assert shipper.failures == 3  # refused three times, then sent: nothing dropped
        assert sorted(spool.puts) == [
            "nodes/r1/sess/part/audio/audio-0001.webm",
            "nodes/r1/sess/part/audio/manifest.json",
        ]
        assert (tmp_path / "spool/nodes/r1/sess/part/audio/audio-0001.webm").read_bytes() == b"a" * 100

        # The next segment closes: the manifest, rewritten, goes again after it.
        (directory / "audio-0002.webm").write_bytes(b"b" * 50)
        (directory / "manifest.json").write_text('{"v": 2}')
        shipper.ship("r1", base, ["sess/part/audio/audio-0002.webm", "sess/part/audio/manifest.json"])
        await _drained(shipper)
        assert sorted(spool.puts[2:]) == [
            "nodes/r1/sess/part/audio/audio-0002.webm",
            "nodes/r1/sess/part/audio/manifest.json",
        ]
        assert (tmp_path / "spool/nodes/r1/sess/part/audio/manifest.json").read_text() == '{"v": 2}'
    finally:
        await shipper.aclose()


async def test_a_file_removed_before_its_turn_is_skipped_and_closing_stops_retrying(tmp_path: Path) -> None:
    spool = FlakyStorage(tmp_path / "spool")
    spool.down = 1_000_000
    shipper = Shipper((spool, ""))
    (tmp_path / "x.webm").write_bytes(b"x")
    shipper.ship("r", tmp_path, ["x.webm"])
    await asyncio.sleep(0.3)
    assert shipper.failures >= 1 and spool.puts == []
    await asyncio.wait_for(shipper.aclose(), 2)  # does not wait for the outage to end
    shipper.ship("r", tmp_path, ["x.webm"])  # after close: ignored
    assert not (tmp_path / "spool").exists()

    other = Shipper((FlakyStorage(tmp_path / "spool2"), ""))
    try:
        other.ship("r", tmp_path, ["gone.webm"])  # flushed and deleted meanwhile: nothing to send, no retry
        await _drained(other)
        assert other.failures == 0
    finally:
        await other.aclose()


async def test_without_a_spool_nothing_happens(tmp_path: Path) -> None:
    shipper = Shipper(None)
    assert not shipper.enabled
    shipper.ship("r", tmp_path, ["a.webm"])
    assert shipper.pending == 0
    assert await shipper.flush(None, tmp_path, "r")  # type: ignore[arg-type]  # never touches the database
    await shipper.aclose()


def test_keys_and_files() -> None:
    assert spool_key("nodes/a", "rec", "s/p/audio/f.webm") == "nodes/a/rec/s/p/audio/f.webm"
    assert spool_key("", "rec", "s/p/audio/f.webm") == "rec/s/p/audio/f.webm"

    class Row:
        def __init__(self, path: str) -> None:
            self.path = path

    rows = [Row("s/p/audio/a-1.webm"), Row("s/p/audio/a-2.webm"), Row("s/p/video/v-1.webm")]
    assert spooled_files(rows) == [  # type: ignore[arg-type]
        "s/p/audio/a-1.webm",
        "s/p/audio/a-2.webm",
        "s/p/audio/manifest.json",
        "s/p/video/manifest.json",
        "s/p/video/v-1.webm",
    ]


class SlowStorage(FlakyStorage):
    """Each upload takes a while; notes how many ran at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.running = self.most = 0

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.05)  # a remote bucket's round trip
            return await super().put_file(local_path, key)
        finally:
            self.running -= 1


async def test_a_few_uploads_run_at_once_and_each_file_is_sent_once(tmp_path: Path) -> None:
    names = [f"s/p{i}/video/v-{i}.webm" for i in range(10)]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    spool = SlowStorage(tmp_path / "spool")
    shipper = Shipper((spool, ""))
    try:
        shipper.ship("r", tmp_path, names)
        await _drained(shipper)
        assert spool.most == 4  # a slow bucket does not serialize the closes of many tracks
        assert sorted(spool.puts) == sorted(f"r/{n}" for n in names)  # each once
    finally:
        await shipper.aclose()
