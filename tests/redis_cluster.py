"""A throwaway three-node Redis Cluster for the tests, started once per test session.

The shared Redis on 6379 is a single node; the cluster runs its own redis-server
processes on free ports under a temporary directory and is shut down at exit.
"""

from __future__ import annotations

import atexit
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_started: tuple[str, list[subprocess.Popen[bytes]], Path] | None = None
_failed: str | None = None


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """Ports whose cluster bus port (+10000) is free too."""
    found: list[int] = []
    while len(found) < count:
        port = random.randint(20000, 29000)
        if port not in found and _free(port) and _free(port + 10000):
            found.append(port)
    return found


def _cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30
    )
    return out.stdout


def _until(check: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise RuntimeError(f"Redis Cluster: {what} timed out")
        time.sleep(0.05)


def _stop() -> None:
    if _started is None:
        return
    _, procs, root = _started
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    shutil.rmtree(root, ignore_errors=True)


def cluster_url() -> tuple[str | None, str]:
    """(`redis://h:p1,h:p2,h:p3/0`, "") once the cluster serves every slot, or (None, why)."""
    global _started, _failed
    if _started is not None:
        return _started[0], ""
    if _failed is not None:
        return None, _failed
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        _failed = "redis-server/redis-cli not installed"
        return None, _failed
    root = Path(tempfile.mkdtemp(prefix="chronctl-cluster-"))
    ports = _ports(3)
    procs = []
    for port in ports:
        node = root / str(port)
        node.mkdir()
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node / "nodes.conf"),
                    "--dir",
                    str(node),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    url = "redis://" + ",".join(f"127.0.0.1:{p}" for p in ports) + "/0"
    _started = (url, procs, root)
    atexit.register(_stop)
    try:
        for port in ports:
            _until(lambda port=port: _cli(port, "ping").strip() == "PONG", "start")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
        for port in ports:
            _until(
                lambda port=port: "cluster_state:ok" in _cli(port, "cluster", "info"),
                "slot assignment",
            )
    except (RuntimeError, subprocess.SubprocessError) as exc:
        _stop()
        _started = None
        _failed = f"could not start a local cluster: {exc}"
        return None, _failed
    return url, ""
