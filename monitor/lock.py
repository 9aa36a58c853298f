"""One service per data dir: an exclusive lock held for the life of `raqib run` / `raqib once`.

An advisory flock on `<data dir>/raqib.lock`, so the kernel releases it when the holder dies
(even by SIGKILL) and a stale pid file can never lock a user out. The holder writes its pid
and command into the file so the refusal can name it. Exactly-once delivery between
processes does not rest on this lock alone: outbox rows are leased too (monitor.store)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from monitor.errors import RaqibError


class DataDirBusy(RaqibError):
    """Another Raqib process holds the data dir."""


class DataDirLock:
    def __init__(self, data_dir: Path, command: str):
        self.path = Path(data_dir) / "raqib.lock"
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise DataDirBusy(f"data dir {self.path.parent} is in use by {holder}; "
                              "stop it first (one service per data dir)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} raqib {self.command}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, what = text.partition(" ")
    return f"{what or 'another raqib process'} (pid {pid})" if pid.isdigit() else "another raqib process"
