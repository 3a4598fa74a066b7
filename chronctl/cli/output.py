"""The one place that prints: rich tables on a terminal, or one JSON document."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

_STATUS_STYLE = {
    "pending": "yellow", "running": "cyan", "succeeded": "green", "failed": "red",
    "dead": "bold red", "cancelled": "dim",
}


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    sys.stderr.write(f"chronctl: {message}\n")


def relative(ts: datetime | float | None, now: float | None = None) -> str:
    """'in 3m' / '5s ago': what an operator reads at a glance."""
    if ts is None:
        return "-"
    value = ts.timestamp() if isinstance(ts, datetime) else ts
    now = datetime.now(UTC).timestamp() if now is None else now
    delta = value - now
    seconds = abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if delta > 0 else f"{text} ago"


def status_text(status: str | None) -> str:
    if not status:
        return "-"
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
          ) -> None:
    from rich.table import Table

    grid = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*("-" if cell is None else str(cell) for cell in row))
    console().print(grid)
