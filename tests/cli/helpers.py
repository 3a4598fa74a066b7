"""Drive `chronctl` as a real subprocess, the way an operator or a script does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def command() -> list[str]:
    """The `chronctl` console script users run, installed beside this Python.

    Tests drive the real command, not `python -m chronctl`: the entry point,
    its argument handling and its exit codes are what operators meet.
    """
    script = Path(sys.executable).parent / "chronctl"
    if not script.exists():
        raise AssertionError(f"no chronctl console script at {script}: run `pip install -e .`")
    return [str(script)]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out["NO_COLOR"] = "1"
    out["COLUMNS"] = "200"
    out.pop("CHRONCTL_BACKEND", None)
    out.pop("CHRONCTL_MANIFEST", None)
    return out


def chronctl(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 60,
    input: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), *args],
        cwd=cwd or ROOT,
        env={**env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        # Never the terminal pytest runs in: a command that asks before deleting would wait.
        stdin=subprocess.DEVNULL if input is None else None,
    )


def spawn(
    *args: str, cwd: Path, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [*command(), *args],
        cwd=cwd,
        env={**env(), **(extra_env or {})},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def poll(check: Callable[[], T | None], timeout: float = 30, what: str = "condition") -> T:
    """Wait for another process to reach a state (no event crosses the process boundary)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The SPEC's error shape: exactly one line on stderr, no traceback."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]
