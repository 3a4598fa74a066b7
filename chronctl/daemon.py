"""Running detached: the pidfile, the double fork, and stopping a daemon.

The pidfile is created exclusively (O_EXCL, never through a symlink, mode
0600) and stays locked (flock) while the daemon lives, so two daemons can
never share one, and a pidfile left by a crash (dead pid, no lock) is
detected and replaced. The parent waits for the daemon to report that it
started (or why it could not) before it exits, so `chronctl run --daemon`
fails loudly instead of leaving nothing running.

A pid in a file proves nothing: the daemon may be long gone and its pid
reused, or the file may name init. `stop` and `status` trust a pidfile only
while it is locked by the very pid it names (`daemon_pid`); anything else is
stale, and nobody is signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import sys
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
    """The pid a pidfile names; None when unreadable or not a single process's pid.

    0 and negative numbers are refused here: `kill(0)` and `kill(-1)` signal a
    whole process group or every process, never one daemon.
    """
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 else None


def daemon_pid(pidfile: Path) -> int | None:
    """The pid of the live chronctl daemon that holds `pidfile`; None when it is stale.

    The daemon keeps an flock on its pidfile for its whole life, so the file
    counts only while it is locked and (where /proc/locks tells) the lock is
    held by the pid the file names. Pid 1 is never a daemon of ours.
    """
    pid = read_pid(pidfile)
    if pid is None or pid <= 1 or pid == os.getpid() or not pid_alive(pid):
        return None
    if not _locked(pidfile):
        return None
    holders = _flock_holders(pidfile)
    if holders is not None:
        return pid if pid in holders else None
    return pid if _runs_chronctl(pid) else None


def _flock_holders(path: Path) -> set[int] | None:
    """The pids holding an flock on `path`, from /proc/locks; None when it cannot tell."""
    try:
        inode = os.stat(path, follow_symlinks=False).st_ino
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    holders: set[int] = set()
    for line in text.splitlines():
        # "3: FLOCK  ADVISORY  WRITE 4242 fe:00:1474578 0 EOF"; "->" marks a waiter
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        with contextlib.suppress(ValueError, IndexError):
            if int(fields[5].rsplit(":", 1)[1]) == inode:
                holders.add(int(fields[4]))
    return holders or None


def _runs_chronctl(pid: int) -> bool:
    """Whether `pid` runs the chronctl command (where /proc cannot name the lock holder)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no /proc: the held lock is all there is to go on
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"chronctl" in os.path.basename(arg) for arg in argv[:3])


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
        logging.getLogger("chronctl").exception("the daemon crashed")
        code = 1
    finally:
        ready(None)
        held.release()
    logging.shutdown()  # os._exit skips atexit: write the batched log lines first
    os._exit(code)


def stop_daemon(pidfile: Path, timeout: float) -> int:
    """SIGTERM the daemon holding the pidfile and wait for it to exit; returns its pid.

    Ownership is checked before anything is sent, and on Linux the signal goes
    through a pidfd opened before the check, so a pid recycled in between
    cannot receive it.
    """
    pid = read_pid(pidfile)
    if pid is None:
        raise NotRunningError(f"chronctl is not running (no pid in {pidfile})")
    handle = _open_pidfd(pid)
    try:
        if daemon_pid(pidfile) != pid:
            why = "is gone" if not pid_alive(pid) else "is not the chronctl daemon holding it"
            raise NotRunningError(
                f"chronctl is not running (stale pidfile {pidfile}: pid {pid} {why})"
            )
        _signal(pid, handle, signal.SIGTERM)
        if not _wait_exit(pid, handle, timeout):
            raise ChronctlError(
                f"chronctl (pid {pid}) did not stop within {timeout:g}s; "
                "send SIGTERM again to stop it now"
            )
    finally:
        if handle is not None:
            os.close(handle)
    return pid


def _open_pidfd(pid: int) -> int | None:
    """A pidfd pins one process: whatever reuses its pid later is not signalled."""
    if sys.platform != "linux":  # pidfds are Linux's
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone already, or a kernel without pidfds
        return None
    return fd


def _signal(pid: int, handle: int | None, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if handle is not None:
            signal.pidfd_send_signal(handle, sig)
        else:
            os.kill(pid, sig)


def _wait_exit(pid: int, handle: int | None, timeout: float) -> bool:
    """Whether the process exited within `timeout` (a pidfd turns readable when it does)."""
    if handle is not None:
        poller = select.poll()
        poller.register(handle, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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
    "daemon_pid",
    "daemonize",
    "pid_alive",
    "process_started",
    "read_pid",
    "stop_daemon",
]
