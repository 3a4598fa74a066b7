"""Running detached: the pidfile, the double fork, and stopping a daemon.

The pidfile is created exclusively (O_EXCL, never through a symlink, mode
0600) and stays locked (flock) while the daemon lives, so two daemons can
never share one, and a pidfile left by a crash (dead pid, no lock) is
detected and replaced. The parent waits for the daemon to report that it
started (or why it could not) before it exits, so `chronctl run --daemon`
fails loudly instead of leaving nothing running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ChronctlError


class AlreadyRunningError(ChronctlError):
    pass


class NotRunningError(ChronctlError):
    pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) answers kill(0) but is not running.
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class PidFile:
    """A held pidfile: the open, locked descriptor lives as long as the daemon."""

    path: Path
    fd: int

    def write(self, pid: int) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            if read_pid(self.path) == os.getpid():
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def acquire_pidfile(path: Path) -> PidFile:
    """Create and lock the pidfile, replacing a stale one; refuse a live one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pid = read_pid(path)
            if pid is not None and pid_alive(pid) and _locked(path):
                raise AlreadyRunningError(
                    f"chronctl is already running (pid {pid}, pidfile {path})"
                ) from None
            # Stale: its process is gone (or it was never locked). Replace it.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        held = PidFile(path, fd)
        held.write(os.getpid())
        return held
    raise AlreadyRunningError(f"cannot take the pidfile {path}: another chronctl is starting")


def _locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def daemonize(
    pidfile: Path, workdir: Path, start: Callable[[Callable[[str | None], None]], None]
) -> int:
    """Detach and call `start(ready)` in the daemon; returns the daemon's pid in the parent.

    `ready(None)` tells the waiting parent the daemon is up; `ready("why")`
    that it failed. The parent raises on failure, so the operator sees the
    reason on the terminal rather than in a log file.
    """
    read_end, write_end = os.pipe()
    first = os.fork()
    if first:  # the original process: wait for the daemon's word
        os.close(write_end)
        os.waitpid(first, 0)
        with os.fdopen(read_end, "r") as pipe:
            message = pipe.read()
        status, _, detail = message.partition(" ")
        if status == "ok":
            return int(detail)
        raise ChronctlError(detail.strip() or "the daemon exited before it started")
    # First child: a new session, then fork again so the daemon can never
    # reacquire a controlling terminal.
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.umask(0o077)
    os.chdir(workdir)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    reported = False

    def ready(error: str | None) -> None:
        nonlocal reported
        if reported:
            return
        reported = True
        text = f"ok {os.getpid()}" if error is None else f"error {error}"
        with contextlib.suppress(OSError):
            os.write(write_end, text.encode())
            os.close(write_end)

    code = 0
    try:
        held = acquire_pidfile(pidfile)
    except ChronctlError as exc:
        ready(str(exc))
        os._exit(1)
    try:
        start(ready)
    except ChronctlError as exc:
        ready(str(exc))
        code = 1
    except BaseException as exc:  # report, then let the log have the traceback
        ready(f"{type(exc).__name__}: {exc}")
        import logging

        logging.getLogger("chronctl").exception("the daemon crashed")
        code = 1
    finally:
        ready(None)
        held.release()
    os._exit(code)


def stop_daemon(pidfile: Path, timeout: float) -> int:
    """SIGTERM the daemon named by the pidfile and wait for it to exit; returns its pid."""
    pid = read_pid(pidfile)
    if pid is None or not pid_alive(pid):
        raise NotRunningError(f"chronctl is not running (no live pid in {pidfile})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise ChronctlError(
                f"chronctl (pid {pid}) did not stop within {timeout:g}s; "
                "send SIGTERM again to stop it now"
            )
        time.sleep(0.05)
    return pid


def process_started(pid: int) -> float | None:
    """When `pid` started (epoch), for `status`'s uptime; None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


__all__ = [
    "AlreadyRunningError",
    "NotRunningError",
    "PidFile",
    "acquire_pidfile",
    "daemonize",
    "pid_alive",
    "process_started",
    "read_pid",
    "stop_daemon",
]
