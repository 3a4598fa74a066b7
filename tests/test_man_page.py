"""The man page is generated from the CLI; it must be regenerated when the CLI changes."""

from __future__ import annotations

import subprocess
import sys

from .cli.helpers import ROOT, env


def test_man_page_is_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "man" / "generate.py"), "--check"],
                            capture_output=True, text=True, env=env())
    assert result.returncode == 0, result.stderr
