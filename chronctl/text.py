"""Text from task data made safe to print: one rule for tables, errors and logs.

Queue names, args, errors and a command's output come from whoever enqueued
or ran a task. Printed raw, an ESC sequence in them moves the cursor, sets
the window title or rewrites the screen of the operator reading them, and a
newline forges a second log line. Every human-readable output goes through
`safe`; JSON needs nothing more (`json.dumps` escapes control characters).
"""

from __future__ import annotations

from pathlib import Path


def safe(text: object, *, lines: bool = False) -> str:
    """`text` with every non-printable character escaped as Python writes it.

    Escapes C0/C1 controls (ESC starts every terminal sequence; 0x9b is CSI
    on its own), DEL, and invisible Unicode format characters such as the
    right-to-left override, which make a line read differently from what it
    holds. `lines=True` keeps line breaks and tabs, for multi-line blocks (a
    traceback, a command's output).
    """
    value = str(text)
    if value.isprintable():
        return value
    if lines:
        value = value.replace("\r\n", "\n")
    return "".join(
        c if c.isprintable() or (lines and c in "\n\t") else repr(c)[1:-1] for c in value
    )


def shown_path(path: str | Path) -> str:
    """A path under the current directory is shown relative to it, as git shows paths:
    `chronctl.log` reads better than `/srv/jobs/chronctl.log`, and a copied example says
    nothing of the machine it came from. Anything else is shown as it is."""
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
