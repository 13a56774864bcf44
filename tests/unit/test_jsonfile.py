"""Unit tests for kerneye.export.jsonfile (no kernel, no root)."""
from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerneye.errors import ConfigError, ExportError
from kerneye.export.jsonfile import RotatingFileWriter


def _files_oldest_first(path: Path) -> list[Path]:
    """path.N … path.1, path: the order in which lines were written."""
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]), reverse=True)
    return [*backups, path] if path.exists() else backups


def _all_lines(path: Path) -> list[str]:
    lines: list[str] = []
    for f in _files_oldest_first(path):
        data = f.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{f} ends mid-line"
        lines.extend(data.decode().splitlines())
    return lines


def _line(i: int) -> str:
    # Varying lengths so rotation boundaries land everywhere.
    return json.dumps({"seq": i, "pad": "x" * (i * 7919 % 97)})


@pytest.fixture
def umask0() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_write_flush_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    with RotatingFileWriter(path) as w:
        w.write('{"a":1}')
        w.write('{"b":"é"}')
        assert path.read_bytes() == b""  # still buffered
        w.flush()
        assert path.read_text(encoding="utf-8") == '{"a":1}\n{"b":"é"}\n'
        assert w.lines_written == 2
        assert w.bytes_written == len('{"a":1}\n{"b":"é"}\n'.encode())
        assert w.rotations == 0


def test_buffer_flushes_itself_when_full(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    w = RotatingFileWriter(path, buffer_size=100)
    for i in range(20):
        w.write(f'{{"i":{i}}}')
    assert path.stat().st_size >= 100  # reached the kernel without flush()
    w.close()
    assert len(path.read_text().splitlines()) == 20


def test_close_flushes_is_idempotent_and_forbids_writes(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    w = RotatingFileWriter(path)
    w.write("{}")
    w.close()
    w.close()
    w.flush()  # no-op once closed
    assert path.read_text() == "{}\n"
    with pytest.raises(ValueError):
        w.write("{}")


def test_rotation_under_many_writes_keeps_every_line_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    max_size = 1000
    n = 5000
    with RotatingFileWriter(path, max_size_bytes=max_size, max_backups=10_000, buffer_size=4096) as w:
        for i in range(n):
            w.write(_line(i))
    assert w.lines_written == n
    assert w.rotations > 100
    files = _files_oldest_first(path)
    assert len(files) == w.rotations + 1
    assert sum(f.stat().st_size for f in files) == w.bytes_written
    for f in files:
        assert 0 < f.stat().st_size <= max_size
    # concatenated oldest..newest == exactly what was written
    assert _all_lines(path) == [_line(i) for i in range(n)]


def test_old_backups_beyond_max_are_deleted_and_newest_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    with RotatingFileWriter(path, max_size_bytes=200, max_backups=3) as w:
        for i in range(500):
            w.write(_line(i))
    assert w.rotations > 3
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["events.log", "events.log.1", "events.log.2", "events.log.3"]
    lines = _all_lines(path)
    # what survives is a contiguous tail ending with the last line
    expected_tail = [_line(i) for i in range(500 - len(lines), 500)]
    assert lines == expected_tail
    # path.1 is newer than path.2
    seq = lambda p: json.loads(p.read_text().splitlines()[0])["seq"]  # noqa: E731
    assert seq(path.with_name("events.log.1")) > seq(path.with_name("events.log.2"))


def test_zero_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    with RotatingFileWriter(path, max_size_bytes=100, max_backups=0) as w:
        for i in range(50):
            w.write(_line(i))
    assert [p.name for p in tmp_path.iterdir()] == ["events.log"]
    assert w.rotations > 0
    assert _all_lines(path)[-1] == _line(49)


def test_oversized_line_gets_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    big = "y" * 500
    with RotatingFileWriter(path, max_size_bytes=100, max_backups=5) as w:
        w.write("a")
        w.write(big)
        w.write("b")
    assert (tmp_path / "events.log.2").read_text() == "a\n"
    assert (tmp_path / "events.log.1").read_text() == big + "\n"
    assert path.read_text() == "b\n"


def test_appends_to_existing_file_and_counts_its_size(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.write_text("old\n" * 20)  # 80 bytes
    with RotatingFileWriter(path, max_size_bytes=100) as w:
        w.write("new-line-1")  # 91 bytes: fits
        w.write("new-line-2")  # would be 102: rotates first
    assert (tmp_path / "events.log.1").read_text() == "old\n" * 20 + "new-line-1\n"
    assert path.read_text() == "new-line-2\n"


def test_permissions_are_0600_with_umask0_and_preexisting_file(tmp_path: Path, umask0: None) -> None:
    path = tmp_path / "events.log"
    path.write_text("")
    path.chmod(0o644)
    with RotatingFileWriter(path, max_size_bytes=50, max_backups=3) as w:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for i in range(40):
            w.write(_line(i))
    assert w.rotations >= 3
    for f in _files_oldest_first(path):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_missing_directory_error_names_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "events.log"
    with pytest.raises(ExportError) as info:
        RotatingFileWriter(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "--export-file" in msg
    assert "\n" not in msg


def test_parent_is_a_file_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="not a directory"):
        RotatingFileWriter(blocker / "events.log")


def test_path_is_a_directory_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=str(tmp_path)):
        RotatingFileWriter(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses directory permissions")
def test_unwritable_directory_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ExportError) as info:
            RotatingFileWriter(locked / "events.log")
        assert str(locked / "events.log") in str(info.value)
        assert "--export-file" in str(info.value)
    finally:
        locked.chmod(0o700)


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    target.chmod(0o644)
    link = tmp_path / "events.log"
    link.symlink_to(target)
    with pytest.raises(ExportError, match="symbolic link"):
        RotatingFileWriter(link)
    assert target.read_text() == "precious\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_bad_limits_and_multiline_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        RotatingFileWriter(tmp_path / "a", max_size_bytes=0)
    with pytest.raises(ConfigError):
        RotatingFileWriter(tmp_path / "a", max_backups=-1)
    with RotatingFileWriter(tmp_path / "a") as w:
        with pytest.raises(ValueError):
            w.write('{"a":1}\n{"b":2}')
        assert w.lines_written == 0


def test_failed_rotation_rejects_line_and_writer_recovers(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    w = RotatingFileWriter(path, max_size_bytes=20, max_backups=1)
    w.write("0123456789")  # 11 bytes
    # A directory squatting on path.1 makes rename(path, path.1) fail.
    (tmp_path / "events.log.1").mkdir()
    with pytest.raises(ExportError, match="rotate"):
        w.write("abcdefghij")
    assert w.lines_written == 1
    (tmp_path / "events.log.1").rmdir()
    w.write("abcdefghij")  # retry succeeds, no duplicate
    w.close()
    assert (tmp_path / "events.log.1").read_text() == "0123456789\n"
    assert path.read_text() == "abcdefghij\n"
    assert w.rotations == 1


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    per_thread, threads = 2000, 4
    w = RotatingFileWriter(path, max_size_bytes=4096, max_backups=100_000, buffer_size=1024)

    def worker(t: int) -> None:
        for i in range(per_thread):
            w.write(json.dumps({"t": t, "i": i}))
            if i % 500 == 0:
                w.flush()

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    w.close()
    records = [json.loads(x) for x in _all_lines(path)]
    assert len(records) == per_thread * threads == w.lines_written
    for t in range(threads):
        assert [r["i"] for r in records if r["t"] == t] == list(range(per_thread))


def test_unwritable_directory_error_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs as root too: pretend the access check fails; nothing is created.
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    path = tmp_path / "events.log"
    with pytest.raises(ExportError, match="not writable") as info:
        RotatingFileWriter(path)
    assert str(path) in str(info.value)
    assert not path.exists()
