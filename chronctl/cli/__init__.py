"""The `chronctl` command line: a thin layer over the library.

Commands parse arguments, call the library, and print through `output`.
Errors a user can cause end as one line on stderr with the SPEC's exit code
(1 operation failed, 2 usage or manifest error); `-v` shows tracebacks.
`command.py` shapes the click tree typer builds: global options after the
subcommand, help placeholders, one-line usage errors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from .. import __version__

if TYPE_CHECKING:
    from ..backends.base import QueueBackend
    from ..manifest import Manifest

T = TypeVar("T")

app = typer.Typer(
    name="chronctl",
    help="A cron replacement and task queue: jobs from a TOML manifest, run on a backend.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def run_async(work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """`asyncio.run(work)`, given up after `timeout` seconds when one is set.

    The one place the CLI starts an event loop. asyncio is imported here, not at
    the top: with the ssl and socket modules it brings, it is about a fifth of
    the CLI's start-up, which `--version`, `--help` and every Tab press would pay
    for nothing."""
    import asyncio

    return asyncio.run(work if timeout is None else asyncio.wait_for(work, timeout))


def default_manifest() -> Path:
    return Path(os.environ.get("CHRONCTL_MANIFEST") or "jobs.toml")


@dataclass
class Options:
    """The global options, filled in by `command.apply_global` wherever they stand."""

    manifest: Path = field(default_factory=default_manifest)
    backend: str | None = None
    json: bool = False
    verbose: int = 0
    quiet: bool = False

    @property
    def verbosity(self) -> int:
        return -1 if self.quiet else self.verbose

    def load_manifest(self, path: Path | None = None) -> Manifest:
        from ..manifest import load_manifest

        return load_manifest(path or self.manifest)

    def call(
        self,
        command: str,
        fn: Callable[[QueueBackend], Awaitable[T]],
        manifest: Manifest | None = None,
    ) -> T:
        """Run one operation against the backend, connected for just that call."""
        from ..admin import open_backend

        backend = open_backend(self.manifest, self.backend, command, manifest)

        async def go() -> T:
            async with backend:
                return await fn(backend)

        return run_async(go())

    @property
    def show_progress(self) -> bool:
        return not self.json and self.verbosity >= 0


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chronctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "-f",
            "--manifest",
            help="Manifest file (default: ./jobs.toml or $CHRONCTL_MANIFEST).",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            envvar="CHRONCTL_BACKEND",
            help="Backend URL, overriding the manifest's \\[scheduler].backend.",
        ),
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout.")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            count=True,
            show_default=False,
            help="More logging; tracebacks on errors.",
        ),
    ] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """chronctl: run and inspect scheduled jobs and tasks.

    The global options' values reach `ctx.obj` through `command.apply_global`, the
    same path as when they follow the subcommand; the parameters here declare them.
    """
    if not isinstance(ctx.obj, Options):  # called without main(), e.g. typer's test runner
        ctx.obj = Options(manifest or default_manifest(), backend, json, verbose, quiet)
    setup_logging(ctx.obj.verbosity)


def setup_logging(verbosity: int) -> None:
    from ..logs import configure

    configure(verbosity)


def _register() -> None:
    from . import crontab, dlq, jobs, maintenance, run, schedules, tasks, top, web

    run.register(app)
    jobs.register(app)
    schedules.register(app)
    tasks.register(app)
    dlq.register(app)
    maintenance.register(app)
    crontab.register(app)
    top.register(app)
    web.register(app)


_register()


def main() -> None:
    """Entry point: map chronctl errors to one line and the SPEC's exit codes."""
    from .command import build_command

    opts = Options()  # main() reads -v from it, however the options were placed
    try:
        code = build_command()(prog_name="chronctl", standalone_mode=False, obj=opts)
    except (Exception, KeyboardInterrupt) as exc:  # SystemExit (completion) passes through
        sys.exit(_exit_code(exc, opts))
    sys.exit(code if isinstance(code, int) else 0)


def _exit_code(exc: BaseException, opts: Options) -> int:
    """Print one line for `exc` (a traceback first with -v) and return the exit code."""
    from ..errors import ChronctlError
    from .command import report_usage_error
    from .output import error

    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, typer.Abort):
        error("aborted")
        return 1
    code = report_usage_error(exc)
    if code is not None:
        return code
    if opts.verbosity > 0:
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, ChronctlError):
        error(str(exc))
        return exc.exit_code
    error(f"unexpected error: {type(exc).__name__}: {exc} (run with -v for details)")
    return 1
