"""Interval rotation, compression and permissions of kerneye.export.jsonfile."""
from __future__ import annotations

import gzip
import json
import os
import re
import stat
import threading
from pathlib import Path

import pytest

from kerneye.errors import ConfigError
from kerneye.export.jsonfile import RotatingFileWriter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _backups(path: Path) -> list[Path]:
    """path.N[.gz] … path.1[.gz]: oldest first."""
    rx = re.compile(re.escape(path.name) + r"\.(\d+)(\.gz)?$")
    found = [(int(m.group(1)), p) for p in path.parent.iterdir() if (m := rx.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _read(p: Path) -> bytes:
    return gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()


def _all_lines(path: Path) -> list[str]:
    lines: list[str] = []
    for f in [*_backups(path), path]:
        if not f.exists():
            continue
        data = _read(f)
        assert data == b"" or data.endswith(b"\n"), f"{f} ends mid-line"
        lines.extend(data.decode().splitlines())
    return lines


def test_interval_rotation_with_fake_clock(tmp_path: Path) -> None:
    c = Clock()
    path = tmp_path / "ev.log"
    with RotatingFileWriter(path, rotation_interval_s=60, clock=c) as w:
        w.write("a")
        c.t += 59
        w.write("b")
        assert w.rotations == 0
        c.t += 1
        w.write("c")  # interval over: "c" starts a new file
        assert w.rotations == 1
        c.t += 30
        w.write("d")
        c.t += 30
        w.flush()  # a quiet file is rotated by flush, too
        assert w.rotations == 2
        c.t += 600
        w.flush()  # empty file: not rotated, the timer restarts
        assert w.rotations == 2
        w.write("e")
        c.t += 59
        w.write("f")
        assert w.rotations == 2
    assert (tmp_path / "ev.log.2").read_text() == "a\nb\n"
    assert (tmp_path / "ev.log.1").read_text() == "c\nd\n"
    assert path.read_text() == "e\nf\n"


def test_interval_and_size_rotation_combined(tmp_path: Path) -> None:
    c = Clock()
    path = tmp_path / "ev.log"
    with RotatingFileWriter(path, max_size_bytes=10, rotation_interval_s=5, clock=c, max_backups=100) as w:
        for i in range(50):
            w.write(f"{i:03d}")  # 4 bytes a line: 2 lines per file by size
            c.t += 1
    lines = _all_lines(path)
    assert lines == [f"{i:03d}" for i in range(50)]
    assert all(len(_read(f)) <= 10 for f in _backups(path))


def test_compression_of_backups(tmp_path: Path) -> None:
    path = tmp_path / "ev.log"
    w = RotatingFileWriter(path, max_size_bytes=1000, max_backups=3, compress=True)
    for i in range(200):
        w.write(json.dumps({"seq": i, "pad": "x" * 40}))
    w.close()
    backups = _backups(path)
    assert [b.name for b in backups] == ["ev.log.3.gz", "ev.log.2.gz", "ev.log.1.gz"]
    assert not any(p.name.endswith((".tmp", ".1", ".2", ".3")) for p in tmp_path.iterdir())
    seqs = [json.loads(x)["seq"] for x in _all_lines(path)]
    assert seqs == list(range(seqs[0], 200))  # contiguous: the oldest were deleted, nothing else lost
    assert w.compress_errors == 0


def test_max_backups_honoured_with_mixed_plain_and_gz_backups(tmp_path: Path) -> None:
    path = tmp_path / "ev.log"
    # Plain backups left by an earlier run without compression.
    for n in (1, 2):
        (tmp_path / f"ev.log.{n}").write_text(f"old{n}\n")
    w = RotatingFileWriter(path, max_size_bytes=5, max_backups=3, compress=True)
    for i in range(6):
        w.write(f"n{i}xx")  # 5 bytes with newline: one line per file
    w.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ev.log", "ev.log.1.gz", "ev.log.2.gz", "ev.log.3.gz"], names
    assert _all_lines(path) == ["n2xx", "n3xx", "n4xx", "n5xx"]


def test_max_backups_one_and_zero_with_compression(tmp_path: Path) -> None:
    p1 = tmp_path / "one.log"
    with RotatingFileWriter(p1, max_size_bytes=3, max_backups=1, compress=True) as w:
        for s in ("aa", "bb", "cc"):
            w.write(s)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["one.log", "one.log.1.gz"]
    assert _all_lines(p1) == ["bb", "cc"]
    p0 = tmp_path / "zero.log"
    with RotatingFileWriter(p0, max_size_bytes=3, max_backups=0, compress=True) as w:
        for s in ("aa", "bb"):
            w.write(s)
    assert p0.read_text() == "bb\n" and not list(tmp_path.glob("zero.log.*"))


@pytest.mark.parametrize("perm", [0o600, 0o640, 0o400])
def test_configurable_perm_for_file_backups_and_gz(tmp_path: Path, perm: int) -> None:
    old = os.umask(0o077 if perm != 0o600 else 0)
    try:
        path = tmp_path / "ev.log"
        with RotatingFileWriter(path, max_size_bytes=10, max_backups=5, compress=True, perm=perm) as w:
            for i in range(10):
                w.write(f"line{i}")
    finally:
        os.umask(old)
    files = [path, *_backups(path)]
    assert len(files) > 2
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == perm, f


def test_default_perm_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "ev.log"
    path.write_text("")
    os.chmod(path, 0o666)
    with RotatingFileWriter(path) as w:
        w.write("x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_bad_interval_and_perm(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="interval"):
        RotatingFileWriter(tmp_path / "a", rotation_interval_s=-1)
    with pytest.raises(ConfigError, match="mode"):
        RotatingFileWriter(tmp_path / "a", perm=0o4755)


def test_compression_failure_keeps_plain_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kerneye.export.jsonfile as jf

    def boom(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jf.shutil, "copyfileobj", boom)
    path = tmp_path / "ev.log"
    w = RotatingFileWriter(path, max_size_bytes=3, max_backups=5, compress=True)
    w.write("aa")
    w.write("bb")
    w.close()
    assert w.compress_errors == 1
    assert (tmp_path / "ev.log.1").read_text() == "aa\n"
    assert not list(tmp_path.glob("*.tmp"))
    assert _all_lines(path) == ["aa", "bb"]


def test_no_line_lost_or_duplicated_under_many_writes_across_rotations(tmp_path: Path) -> None:
    """Size + interval rotation + compression, 4 writer threads, 40k lines."""
    c = Clock()
    lock = threading.Lock()
    path = tmp_path / "ev.log"
    w = RotatingFileWriter(path, max_size_bytes=20_000, max_backups=100_000, buffer_size=4096,
                           rotation_interval_s=1.0, compress=True, clock=c)
    per_thread = 10_000

    def writer(t: int) -> None:
        for i in range(per_thread):
            w.write(json.dumps({"t": t, "i": i, "pad": "y" * (i * 7919 % 61)}))
            if i % 500 == 0:
                with lock:
                    c.t += 0.6  # interval rotations interleave with size rotations
            if i % 997 == 0:
                w.flush()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    w.close()
    assert w.rotations > 50
    lines = _all_lines(path)
    assert len(lines) == len(set(lines)) == 4 * per_thread == w.lines_written
    by_thread: dict[int, list[int]] = {}
    for ln in lines:
        d = json.loads(ln)
        by_thread.setdefault(d["t"], []).append(d["i"])
    for seq in by_thread.values():
        assert seq == list(range(per_thread))  # each thread's lines in order
