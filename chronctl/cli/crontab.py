"""`chronctl import-crontab`.

Library imports sit inside the commands: see cli/jobs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from . import Options
from .output import error, print_json


def register(app: typer.Typer) -> None:
    app.command("import-crontab")(import_crontab)


def import_crontab(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(help="A user crontab, /etc/crontab or a cron.d file.", show_default=False),
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write the manifest here (default: stdout)."),
    ] = None,
    system: Annotated[
        bool | None,
        typer.Option(
            "--system/--user",
            help="Force (or deny) a user column (default: detected).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
) -> None:
    """Turn a crontab into a manifest; warnings name what could not be mapped."""
    from ..crontab_import import import_crontab as convert

    opts: Options = ctx.obj
    imported, text = convert(file, system)
    if output is not None and output.exists() and not force:
        raise UsageError(f"{output} exists: use --force to overwrite it")
    if opts.json:
        print_json({"jobs": len(imported.jobs), "warnings": imported.warnings, "manifest": text})
    else:
        for warning in imported.warnings:
            error(f"warning: {warning}")
    if output is not None:
        output.write_text(text)
        if not opts.json:
            typer.echo(
                f"wrote {len(imported.jobs)} job(s) to {output}; check it with "
                f"`chronctl validate {output}`"
            )
    elif not opts.json:
        typer.echo(text, nl=False)
