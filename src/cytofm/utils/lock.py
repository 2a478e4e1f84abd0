"""An exclusive lock on an output folder, so two runs never write into the same one.

``fcntl.flock`` is released by the kernel when its holder dies, so a lock left by a killed run is taken
over without any staleness guessing; the lock file only carries who holds it (pid, host, start time,
command) for the refusal message.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from cytofm.utils.errors import UserError

LOCK_NAME = ".cytofm.lock"


class FolderLocked(UserError, RuntimeError):
    """Another live process is writing into the folder."""


class FolderLock:
    """``with FolderLock(out, log=...):`` holds ``out/.cytofm.lock`` for the block."""

    def __init__(self, folder: str | os.PathLike, log=print, what: str = "run"):
        self.path = Path(folder) / LOCK_NAME
        self.log = log
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise FolderLocked(
                f"{self.path.parent}: another cytofm {holder.get('what', 'run')} is writing here "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"started {holder.get('started', '?')}); "
                "wait for it to finish or choose another output folder") from None
        old = _read_holder(fd)
        if old.get("pid"):
            self.log(f"note: {self.path.parent}: taking over the lock left by pid {old['pid']} "
                     f"(started {old.get('started', '?')}), which is no longer running")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        os.ftruncate(self._fd, 0)  # an empty lock file means nobody was interrupted
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read_holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 65536, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
