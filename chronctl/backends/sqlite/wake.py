"""Cross-process wake-ups for an idle SQLite worker: inotify on the `-wal` file.

SQLite has no notifications, but in WAL mode every commit writes the `-wal`
file. On Linux the kernel tells us of those writes (inotify, through libc via
ctypes: no extra dependency), so a task enqueued by another process wakes an
idle worker at once instead of at the next look at the file. Where inotify is
unavailable (another OS, no free inotify instance, the watch refused) `open_watch`
returns None and the backend keeps polling the file's size and mtime.

Events stay queued in the kernel between waits, so a commit that lands while
the worker is busy claiming is not missed: the next wait returns at once.
The worker's own commits wake it too; that costs one empty claim, which
writes nothing, so an idle worker does not wake itself again.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import os
import struct
import sys
from typing import Any

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of name)
_WATCHED = IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):  # no libc by that name, or one without inotify
        return None
    return libc


class WalWatch:
    """An inotify instance watching one file for writes; see the module docstring."""

    def __init__(self, fd: int, path: str) -> None:
        self._fd = fd
        self.path = path
        self.broken = False  # the file went away: the caller falls back to polling

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        """Read every queued event; True when there was one (the file may have changed)."""
        seen = False
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                return seen
            except OSError:
                self.broken = True
                return True
            if not data:
                return seen
            seen = True
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                    # SQLite deletes the -wal only when the last connection closes, which
                    # ours is not; if it went anyway, stop trusting the watch.
                    self.broken = True

    async def wait(self, woken: asyncio.Future[Any], timeout: float) -> bool:
        """Until the file is written (by anyone), `woken` completes, or `timeout` passes;
        True when the file was written."""
        if self.drain():
            return True
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:  # once: the fd stays readable until drained
            loop.remove_reader(self._fd)
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(self._fd, ready)
        try:
            await asyncio.wait(
                {woken, readable}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            loop.remove_reader(self._fd)
            readable.cancel()
        return self.drain()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_watch(path: str) -> WalWatch | None:
    """Watch `path` for writes from any process; None where inotify cannot (then poll)."""
    libc = _libc()
    if libc is None:
        return None
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:  # EMFILE: the per-user inotify instances (fs.inotify.max_user_instances) are used
        return None
    if libc.inotify_add_watch(fd, os.fsencode(path), _WATCHED) < 0:  # ENOENT, EACCES, ENOSPC
        os.close(fd)
        return None
    return WalWatch(fd, path)
