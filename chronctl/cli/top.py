"""`chronctl top`: the live terminal view of a backend (chronctl/overview.py).

One frame is drawn to the terminal's size and never more: every row is one
line, cut with an ellipsis, and when the panels hold more rows than fit, each
gives up rows in turn and says how many it left out. Task data (job names,
queues, errors) is shown escaped (chronctl/text.py), so a task's error cannot
move the cursor or retitle the terminal of the operator watching it.

Library imports sit inside the command: see cli/jobs.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from ..text import safe
from . import Options, run_async
from .output import console, print_json, relative

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.table import Table
    from rich.text import Text

    from ..backends.base import QueueBackend
    from ..manifest import Manifest
    from ..overview import JobView, Overview, Throughput

#: Seconds one snapshot may take before the frame says the backend is not answering.
READ_TIMEOUT = 10.0
#: The next refresh waits at least PACE times as long as the last snapshot took.
PACE = 4
SPARKS = "▁▂▃▄▅▆▇█"
ASCII_SPARKS = ".:-=+*#@"  # a terminal that cannot show block characters (LANG=C over ssh)
_STATE_STYLE = {"alive": "green", "stale": "yellow", "dead": "red"}
_RESULT_STYLE = {"succeeded": "green", "failed": "red", "dead": "bold red", "cancelled": "dim"}


def register(app: typer.Typer) -> None:
    app.command()(top)


def top(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame and exit (for scripts and tests).")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", min=0.2, max=3600, metavar="SECONDS", help="Seconds between refreshes."
        ),
    ] = 1.0,
) -> None:
    """A live view: processes, queues, jobs, running tasks, failures (q quits)."""
    from ..admin import open_backend
    from ..overview import Throughput

    opts: Options = ctx.obj
    manifest = None
    if opts.manifest.exists() or not opts.backend:
        manifest = opts.load_manifest()
    backend = open_backend(opts.manifest, opts.backend, "top", manifest)
    read = _reader(backend, manifest, Throughput())
    if opts.json or once:
        snapshot = run_async(_once(backend, read))
        if opts.json:
            print_json(snapshot.to_public())
        else:
            out = console()
            out.print(Frame(snapshot, _frame_height(out), None, _sparks(out)))
        return
    if not sys.stdout.isatty():
        raise UsageError("`chronctl top` draws on a terminal; use --once for one frame")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C quits, as q does
        run_async(_live(backend, read, interval))


def _reader(
    backend: QueueBackend, manifest: Manifest | None, throughput: Throughput
) -> Callable[[], Awaitable[Overview]]:
    """The snapshot call, with what the manifest adds (jobs, known queues, limits)."""
    from ..admin import manifest_queues
    from ..backpressure import UNLIMITED
    from ..overview import read_overview

    known = manifest_queues(manifest)

    async def read() -> Overview:
        import asyncio

        async with asyncio.timeout(READ_TIMEOUT):
            return await read_overview(
                backend,
                jobs=manifest.jobs if manifest else None,
                known_queues=known,
                limits=manifest.limits if manifest else UNLIMITED,
                throughput=throughput,
            )

    return read


async def _once(backend: QueueBackend, read: Callable[[], Awaitable[Overview]]) -> Overview:
    from ..errors import BackendUnavailableError

    async with backend:
        try:
            return await read()
        except TimeoutError:
            raise BackendUnavailableError(
                f"{backend.label} gave no answer within {READ_TIMEOUT:.0f}s"
            ) from None


def _frame_height(out: Console) -> int | None:
    """The terminal's height; a frame for a file or a pipe is not cut unless LINES says."""
    if out.is_terminal or "LINES" in os.environ:
        return int(out.size.height)
    return None


def _sparks(out: Console) -> str:
    return SPARKS if out.encoding.lower().startswith("utf") else ASCII_SPARKS


async def _live(
    backend: QueueBackend, read: Callable[[], Awaitable[Overview]], interval: float
) -> None:
    """Redraw every `interval` seconds until q (or Ctrl-C); a resize redraws at once."""
    import asyncio
    import signal

    from rich.live import Live

    from ..errors import ChronctlError

    out = console()
    quit_, redraw = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    snapshot: Overview | None = None
    async with backend:
        with _cbreak(fd), Live(console=out, screen=True, auto_refresh=False) as live:
            if fd is not None:
                loop.add_reader(fd, _on_key, fd, quit_, loop)
            loop.add_signal_handler(signal.SIGWINCH, redraw.set)
            try:
                problem: str | None = None
                pace, next_read = interval, 0.0
                while not quit_.is_set():
                    if loop.time() >= next_read:
                        started = loop.time()
                        try:
                            snapshot = await read()
                            problem = None
                        except TimeoutError:
                            problem = f"no answer within {READ_TIMEOUT:.0f}s"
                        except (ChronctlError, OSError) as exc:
                            problem = str(exc) or type(exc).__name__
                        # A slow snapshot (a SQL backend counting a million pending
                        # tasks) is not repeated back to back: the backend spends at
                        # most 1/PACE of its time answering `top`.
                        pace = max(interval, PACE * (loop.time() - started))
                        next_read = loop.time() + pace
                    redraw.clear()
                    if snapshot is not None:
                        note = f"slow: every {pace:.0f}s" if pace > interval else None
                        frame = Frame(snapshot, out.size.height, problem, _sparks(out), note)
                        live.update(frame, refresh=True)
                    elif problem is not None:
                        live.update(_line(f"chronctl top: {problem}", "red"), refresh=True)
                    await _first(quit_, redraw, max(0.0, next_read - loop.time()))
            finally:
                if fd is not None:
                    loop.remove_reader(fd)
                loop.remove_signal_handler(signal.SIGWINCH)


async def _first(quit_: asyncio.Event, redraw: asyncio.Event, timeout: float) -> None:
    """Wait for q, a resize or `timeout` seconds, whichever comes first."""
    import asyncio

    waits = [asyncio.ensure_future(quit_.wait()), asyncio.ensure_future(redraw.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _on_key(fd: int, quit_: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    """q quits; end of input stops listening (a closed stdin would wake us forever)."""
    try:
        data = os.read(fd, 64)
    except OSError:
        data = b""
    if not data:
        loop.remove_reader(fd)
    elif b"q" in data.lower():
        quit_.set()


@contextlib.contextmanager
def _cbreak(fd: int | None) -> Iterator[None]:
    """Keys arrive one at a time, unechoed, while `top` runs; the terminal's settings
    are put back however it ends. Ctrl-C still sends SIGINT (cbreak keeps signals)."""
    if fd is None:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# -- the frame ---------------------------------------------------------------------


def _line(text: str, style: str = "") -> Text:
    from rich.text import Text

    line = Text(safe(text), style=style, no_wrap=True, overflow="ellipsis")
    return line


@dataclass
class Section:
    """One panel: its column header, its rows, and a title for when it has none."""

    title: str
    columns: Sequence[tuple[str, dict[str, Any]]]
    rows: list[list[Any]]
    total: int  # rows it would show given room (more than `rows` when the read was bounded)


class Frame:
    """A snapshot drawn to `height` lines (None: as many as it needs) of the width rich
    gives it, each line cut, never wrapped."""

    def __init__(
        self,
        overview: Overview,
        height: int | None,
        problem: str | None,
        sparks: str,
        note: str | None = None,
    ) -> None:
        self.overview = overview
        self.height = height
        self.problem = problem
        self.sparks = sparks
        self.note = note

    def __rich_console__(self, out: Console, options: ConsoleOptions) -> RenderResult:
        from rich.segment import Segment

        width = options.max_width
        sections = _sections(self.overview, self.sparks)
        header = _header(self.overview, self.problem, self.note)
        wants = [len(s.rows) for s in sections]
        blanks = len(sections) - 1  # a blank line between panels, while there is room
        budget = None
        if self.height is not None:
            budget = self.height - 1 - len(sections)
            if budget - blanks < sum(min(w, 2) for w in wants):
                blanks = 0
            budget = max(0, budget - blanks)
        quotas = _allot(wants, budget)
        parts: list[Any] = [header]
        for i, (section, quota) in enumerate(zip(sections, quotas, strict=True)):
            if i and blanks:
                parts.append(_line(""))
            parts.append(_table(section, quota, width))
        lines: list[list[Segment]] = []
        for part in parts:
            lines += out.render_lines(part, options.update(width=width, height=None), pad=False)
        if self.height is not None:
            lines = lines[: self.height]
        for line in lines:
            yield from Segment.adjust_line_length(line, width, pad=False)
            yield Segment.line()


def _allot(wants: Sequence[int], budget: int | None) -> list[int]:
    """Rows per panel: one each in turn while any wants more and there is room."""
    if budget is None:
        return list(wants)
    got = [0] * len(wants)
    while budget > 0 and any(g < w for g, w in zip(got, wants, strict=True)):
        for i, want in enumerate(wants):
            if budget > 0 and got[i] < want:
                got[i] += 1
                budget -= 1
    return got


def _header(overview: Overview, problem: str | None, note: str | None) -> Text:
    """The first line, most urgent first: a narrow terminal cuts the end (the backend's
    URL, which the operator chose, and the key help) before a failing backend."""
    from rich.text import Text

    clock = time.strftime("%H:%M:%S", time.localtime(overview.at))
    dead = "-" if overview.dead is None else str(overview.dead)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("chronctl top", style="bold")
    text.append(f"  {clock}  ")
    if problem is not None:
        text.append(f"backend: {safe(problem)}", style="bold red")
        text.append("  ")
    if note is not None:
        text.append(note, style="yellow")
        text.append("  ")
    text.append(f"running {overview.running_total}  dead ")
    text.append(dead, style="bold red" if overview.dead else "")
    text.append(f"  {safe(overview.backend)}")
    if overview.unsupported:
        text.append(f"  no {', '.join(overview.unsupported)}", style="dim")
    text.append("  q quits", style="dim")
    return text


def _table(section: Section, quota: int, width: int) -> Any:
    from rich.table import Table
    from rich.text import Text

    if not section.rows or quota == 0:  # nothing to show, or no room: one line
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(section.title, style="bold")
        line.append(f"  {section.total} (no room)" if section.rows else "  none", style="dim")
        return line
    grid: Table = Table(
        box=None, pad_edge=False, header_style="bold", show_edge=False, width=None, expand=False
    )
    # Every column but the free-text one keeps its widest cell (up to its max_width): a
    # count or a time cut to "1…" says nothing, so the free text gives way first. rich
    # would narrow every column alike, so the free-text column is given what is left.
    shown = section.rows if quota >= len(section.rows) else section.rows[: max(0, quota - 1)]
    more = section.total - len(shown)
    more_text = f"+{more} more"
    widths: list[int | None] = []
    for i, (name, settings) in enumerate(section.columns):
        widest = max([len(name), *(_cell_len(row[i]) for row in section.rows)])
        if i == 0 and more > 0:
            widest = max(widest, len(more_text))
        cap = settings.get("max_width")
        widths.append(None if "ratio" in settings else min(widest, cap) if cap else widest)
    gaps = 2 * (len(widths) - 1)
    left = max(1, width - gaps - sum(w for w in widths if w is not None))
    for (name, settings), fixed in zip(section.columns, widths, strict=True):
        grid.add_column(
            name,
            no_wrap=True,
            overflow="ellipsis",
            width=left if fixed is None else fixed,
            justify=settings.get("justify", "left"),
        )
    for row in shown:
        grid.add_row(*(_fit(value, left) for value in row))
    if more > 0:
        grid.add_row(Text(more_text, style="dim"), *([""] * (len(section.columns) - 1)))
    return grid


@dataclass
class Spark:
    """A throughput series, drawn as wide as its column allows: the latest buckets."""

    series: Sequence[int]
    sparks: str


def _fit(value: object, width: int) -> Any:
    if not isinstance(value, Spark):
        return value
    from rich.text import Text

    return Text(_spark(value.series[-width:], value.sparks), style="cyan")


def _cell_len(value: object) -> int:
    from rich.text import Text

    if isinstance(value, Spark):
        return len(value.series)
    return value.cell_len if isinstance(value, Text) else len(str(value))


def _cell(value: object, style: str = "") -> Text:
    from rich.text import Text

    return Text("-" if value is None else safe(value), style=style)


def _spark(series: Sequence[int], sparks: str) -> str:
    top = max(series, default=0)
    if top == 0:
        return " " * len(series)
    levels = len(sparks)  # 1..top maps onto the levels, the busiest bucket on the highest
    return "".join(" " if n == 0 else sparks[(n * levels + top - 1) // top - 1] for n in series)


def _elapsed(seconds: float | None, timeout: float | None) -> Text:
    from rich.text import Text

    from ..durations import format_duration

    if seconds is None:
        return Text("-")
    text = format_duration(int(seconds))
    if timeout is None:
        return Text(text)
    share = seconds / timeout if timeout else 1.0
    style = "bold red" if share >= 1 else "yellow" if share >= 0.8 else ""
    return Text(f"{text}/{format_duration(timeout)}", style=style)


def _sections(overview: Overview, sparks: str) -> list[Section]:
    now = overview.at
    right: dict[str, Any] = {"justify": "right"}
    grow: dict[str, Any] = {"ratio": 1}
    processes = Section(
        "PROCESSES",
        [
            ("HOST", {"max_width": 24}),
            ("PID", right),
            ("ROLE", {}),
            ("STATE", {}),
            ("LAST BEAT", {}),
            ("TASKS", right),
            ("QUEUES", grow),
        ],
        [
            [
                _cell(p.process.host),
                _cell(p.process.pid),
                _cell(p.process.role),
                _cell(p.state, _STATE_STYLE.get(p.state, "")),
                _cell(relative(p.process.last_beat, now)),
                _cell(p.tasks_running),
                _cell(",".join(p.process.queues) if p.process.queues else "all"),
            ]
            for p in overview.processes
        ],
        len(overview.processes),
    )
    bound = "≥" if overview.rate_partial else ""
    queues = Section(
        "QUEUES",
        [
            ("QUEUE", {"max_width": 24}),
            ("PENDING", right),
            ("RUNNING", right),
            ("PAUSED", {}),
            ("DONE/MIN", right),
            ("LAST 2 MINUTES", {**grow, **right}),  # the right edge is now
        ],
        [
            [
                _cell(q.info.name),
                _cell(q.info.pending),
                _cell(q.info.running),
                _cell("paused", "bold yellow") if q.info.paused else _cell("no", "dim"),
                _cell(None if q.rate is None else f"{bound}{q.rate}"),
                Spark(q.series, sparks),
            ]
            for q in overview.queues
        ],
        len(overview.queues),
    )
    jobs = Section(
        "JOBS",
        [
            ("JOB", {"max_width": 24}),
            ("NEXT FIRE", {}),
            ("LAST RUN", {}),
            ("RESULT", {}),
            ("TRIGGER", grow),
        ],
        [
            [
                _cell(j.name),
                _cell("paused", "yellow")
                if j.paused
                else _cell(relative(j.next_fire, now) if j.next_fire else "-"),
                _cell(relative(j.last_run, now) if j.last_run else "-"),
                _cell(j.last_status, _RESULT_STYLE.get(j.last_status or "", "")),
                _cell(_trigger(j), "dim"),
            ]
            for j in overview.jobs
        ],
        overview.jobs_total,
    )
    running = Section(
        "RUNNING",
        [
            ("RUNNING TASK", {"min_width": 8}),
            ("JOB", {"max_width": 20}),
            ("QUEUE", {"max_width": 12}),
            ("ELAPSED/TIMEOUT", right),
            ("WORKER", grow),
        ],
        [
            [
                _cell(r.task.id),
                _cell(r.task.job),
                _cell(r.task.queue),
                _elapsed(r.elapsed, r.timeout),
                _cell(r.task.worker),
            ]
            for r in overview.running
        ],
        max(overview.running_total, len(overview.running)),
    )
    failures = Section(
        "FAILURES",
        [
            ("FAILED", {}),
            ("JOB", {"max_width": 20}),
            ("STATUS", {}),
            ("ERROR", grow),
        ],
        [
            [
                _cell(relative(f.finished_at, now)),
                _cell(f.job),
                _cell(f.status, _RESULT_STYLE.get(f.status, "")),
                _cell(_first_line(f.error), "red"),
            ]
            for f in overview.failures
        ],
        len(overview.failures),
    )
    return [processes, queues, jobs, running, failures]


def _trigger(job: JobView) -> str:
    """What fires it, and under which job when it is a schedule of one."""
    if job.source == "enqueue":
        return "(enqueue only)"
    text = job.trigger or "-"
    if job.orphaned:
        return f"{text}, orphaned: no job '{job.job}'"
    if job.source == "runtime":
        return f"{text}, runs {job.job}"
    return f"{text} (override)" if job.source == "override" else text


def _first_line(text: str | None) -> str | None:
    """An error's first non-empty line: a traceback's last line is in `tasks show`."""
    if not text:
        return None
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None
