"""The man page is generated from the CLI; it must be regenerated when the CLI changes."""

from __future__ import annotations

import subprocess
import sys

from .cli.helpers import ROOT, env


def test_man_page_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "man" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        env=env(),
    )
    assert result.returncode == 0, result.stderr


def test_help_texts_survive_rich_markup() -> None:
    """`--help` renders help with rich markup: an unescaped `[default: x]` or
    `[scheduler]` would silently vanish from the screen."""
    import typer.main
    from rich.text import Text

    from chronctl.cli import app

    def walk(command: object) -> list[str]:
        texts = [getattr(command, "help", None) or ""]
        texts += [getattr(p, "help", None) or "" for p in getattr(command, "params", [])]
        for sub in getattr(command, "commands", {}).values():
            texts += walk(sub)
        return texts

    texts = [t for t in walk(typer.main.get_command(app)) if "[" in t]
    assert texts  # the check looks at something
    for text in texts:
        assert Text.from_markup(text).plain == text.replace("\\[", "["), text
