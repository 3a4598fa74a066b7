"""The one place that prints: rich tables on a terminal, or one JSON document.

Cells and detail values are plain text by default: whatever a task carried
(an error, a queue name, args, a command's output) is shown with its control
characters escaped (`\\x1b`, not ESC) and its square brackets literal, so no
task can move the cursor, set the window title or restyle the operator's
terminal, and a `[/]` in an exception message cannot crash rich. Styling is
opt-in: a cell is styled only when the code passes a rich `Text` (`styled`,
`status_text`), never when a string happens to look like markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..text import safe

if TYPE_CHECKING:
    from rich.text import Text

    from ..backends.base import QueueInfo

_STATUS_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "dead": "bold red",
    "cancelled": "dim",
}


def print_json(value: Any) -> None:
    """Indented JSON; a list longer than PLAIN_TABLE_ROWS has one compact item per line
    (the same JSON value), since Python only indents in its slow pure-Python encoder:
    10,000 schedules took 0.6 s to print indented."""
    if isinstance(value, list) and len(value) > PLAIN_TABLE_ROWS:
        lines = ",\n".join("  " + json.dumps(item, default=str) for item in value)
        sys.stdout.write("[\n" + lines + "\n]\n")
        return
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def console(stderr: bool = False) -> Any:
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 200  # piped into grep or a file: never cut ids to fit an imaginary 80 columns
    # NO_COLOR: no styling at all, not just no colour (rich alone would keep bold/dim):
    # output stays plain text whatever terminal it lands on.
    if os.environ.get("NO_COLOR"):
        return Console(
            stderr=stderr, highlight=False, soft_wrap=True, width=width, color_system=None
        )
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def error(message: str) -> None:
    """One line, always: control characters a user typed are shown escaped."""
    sys.stderr.write(f"chronctl: {safe(message)}\n")


def note(message: str) -> None:
    """A remark beside the result (stdout stays what scripts capture), on stderr."""
    error(message)


def confirm(question: str, yes: bool) -> None:
    """Ask before deleting, when a person is at the terminal.

    `--yes` and a stdin that is not a terminal (cron, scripts, pipes) go
    ahead without asking: a prompt nobody can answer would hang them. Any
    answer but y/yes (an empty line, end of input) deletes nothing, exit 1.
    """
    from ..errors import ChronctlError

    if yes or not sys.stdin.isatty():
        return
    sys.stderr.write(f"{safe(question)} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise ChronctlError("aborted: nothing was deleted")


def styled(text: str, style: str) -> Text:
    """A cell the code means to style (untrusted text is never parsed as markup)."""
    from rich.text import Text

    return Text(safe(text), style=style)


def cell(value: Any) -> Text:
    """A table or details cell: `Text` as given, anything else as escaped plain text."""
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return Text("-" if value is None else safe(value))


def relative(ts: datetime | float | None, now: float | None = None) -> str:
    """'in 3m' / '5s ago': what an operator reads at a glance."""
    if ts is None:
        return "-"
    value = ts.timestamp() if isinstance(ts, datetime) else ts
    now = datetime.now(UTC).timestamp() if now is None else now
    delta = value - now
    seconds = abs(delta)
    if seconds < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if delta > 0 else f"{text} ago"


def status_text(status: str | None) -> Text | str:
    if not status:
        return "-"
    style = _STATUS_STYLE.get(status)
    return styled(status, style) if style else status


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    if len(rows) > PLAIN_TABLE_ROWS and title is None:
        _long_table(columns, rows)
        return
    from rich.table import Table

    grid = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for i, column in enumerate(columns):
        last = i == len(columns) - 1
        # Ids and names are copied by operators: never wrap or cut them; only the
        # last (free text) column gives way when the terminal is narrow.
        # Only the last column gives way: every other one keeps its widest cell.
        widest = None if last else max([len(column), *(cell(row[i]).cell_len for row in rows)])
        grid.add_column(
            column, no_wrap=True, overflow="ellipsis" if last else "fold", min_width=widest
        )
    for row in rows:
        grid.add_row(*(cell(value) for value in row))
    out = console()
    fixed = sum(c.min_width or 0 for c in grid.columns) + 2 * len(columns) + 12
    # Fit the terminal by narrowing the last column; if even that cannot fit, let lines
    # run long rather than have rich drop whole columns.
    if fixed > out.width:
        out.width = fixed + 40
    out.print(grid)


#: Rows past which a table is laid out here rather than by rich's Table, which measures
#: every cell several times: 10,000 schedules took 12.9 s to print, 0.3 s this way.
PLAIN_TABLE_ROWS = 200


def _long_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """The same layout as `table` (columns two spaces apart, each as wide as its widest
    cell, only the last cut to the terminal), written as plain lines: a styled cell
    keeps its style, rendered once per distinct style."""
    from rich.cells import cell_len
    from rich.color import ColorSystem
    from rich.style import Style
    from rich.text import Text

    out = console()
    system = {
        "standard": ColorSystem.STANDARD,
        "256": ColorSystem.EIGHT_BIT,
        "truecolor": ColorSystem.TRUECOLOR,
    }.get(out.color_system or "")
    styles: dict[str, Style] = {}

    def plain(value: Any) -> tuple[str, str]:
        if isinstance(value, Text):
            return value.plain, str(value.style or "")
        return ("-" if value is None else safe(value)), ""

    lines = [[(c, "bold") for c in columns], *([plain(v) for v in row] for row in rows)]
    widths = [max(cell_len(line[i][0]) for line in lines) for i in range(len(columns))]
    width = out.width
    if sum(widths[:-1]) + 2 * len(columns) + 12 > width:  # as `table`: run long, drop nothing
        width = sum(widths[:-1]) + 2 * len(columns) + 12 + 40
    room = width - sum(widths[:-1]) - 2 * (len(columns) - 1)
    written = []
    for line in lines:
        parts = []
        for i, (text, style) in enumerate(line):
            last = i == len(line) - 1
            if last and cell_len(text) > room:
                clipped = Text(text)
                clipped.truncate(room, overflow="ellipsis")
                text = clipped.plain
            shown = text
            if style and system is not None:
                parsed = styles.get(style) or styles.setdefault(style, Style.parse(style))
                shown = parsed.render(text, color_system=system)
            parts.append(shown if last else shown + " " * (widths[i] - cell_len(text) + 2))
        written.append("".join(parts))
    out.file.write("\n".join(written) + "\n")


def queue_rows(queues: Sequence[QueueInfo]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """`queues list` and `status`: the columns and rows of the queue table; MAX PENDING
    only when some queue has a limit, so a manifest without limits reads as before."""
    limited = any(q.max_pending is not None for q in queues)
    columns = ["QUEUE", "PENDING", *(["MAX PENDING"] if limited else []), "RUNNING", "PAUSED"]
    rows = [
        (
            q.name,
            q.pending,
            *(["-" if q.max_pending is None else q.max_pending] if limited else []),
            q.running,
            styled("yes", "yellow") if q.paused else "no",
        )
        for q in queues
    ]
    return columns, rows


def short(text: str | None, width: int = 60) -> str:
    if not text:
        return "-"
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def details(pairs: Sequence[tuple[str, Any]]) -> None:
    """A key/value block for one object (`tasks show`)."""
    from rich.table import Table

    grid = Table(box=None, show_header=False, pad_edge=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in pairs:
        grid.add_row(key, cell(None if value == "" else value))
    console().print(grid)


def block(title: str, text: str) -> None:
    """A titled multi-line block (a traceback, a command's output), escaped line by line."""
    from rich.text import Text

    out = console()
    out.print()
    out.print(Text(title, style="bold"))
    out.print(Text(safe(text.rstrip(), lines=True)))


class Progress:
    """A progress bar on stderr for long operations, only when a person is watching."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def total(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=count)

    def advance(self, count: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, count)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
