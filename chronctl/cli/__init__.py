"""The `chronctl` command line: a thin layer over the library.

Commands parse arguments, call the library, and print through `output`.
Errors a user can cause end as one line on stderr with the SPEC's exit code
(1 operation failed, 2 usage or manifest error); `-v` shows tracebacks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

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


@dataclass
class Options:
    manifest: Path
    backend: str | None
    json: bool
    verbosity: int

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
        import asyncio

        from ..admin import open_backend

        backend = open_backend(self.manifest, self.backend, command, manifest)

        async def go() -> T:
            async with backend:
                return await fn(backend)

        return asyncio.run(go())

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
        int, typer.Option("-v", "--verbose", count=True, help="More logging; tracebacks on errors.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """chronctl: run and inspect scheduled jobs and tasks."""
    path = manifest or Path(os.environ.get("CHRONCTL_MANIFEST") or "jobs.toml")
    ctx.obj = Options(path, backend, json, -1 if quiet else verbose)
    _setup_logging(ctx.obj.verbosity)


def _setup_logging(verbosity: int) -> None:
    from ..logs import configure

    configure(verbosity)


def _register() -> None:
    from . import crontab, dlq, jobs, maintenance, run, tasks

    run.register(app)
    jobs.register(app)
    tasks.register(app)
    dlq.register(app)
    maintenance.register(app)
    crontab.register(app)


_register()


def main() -> None:
    """Entry point: map chronctl errors to one line and the SPEC's exit codes."""
    from ..errors import ChronctlError
    from .output import error

    verbose = any(a in ("-v", "--verbose", "-vv") for a in sys.argv[1:])
    try:
        code = app(standalone_mode=False)
    except ChronctlError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        error(str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        error("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        # typer may vendor its own click (typer._click): recognise a usage error by shape,
        # never by importing a `click` that a clean install may not have.
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        if verbose:
            raise
        error(f"unexpected error: {type(exc).__name__}: {exc} (run with -v for details)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
