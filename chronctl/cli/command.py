"""The click command behind `chronctl`, shaped the way gh and kubectl behave.

typer builds the command tree from the declarations; three things are adjusted
on the built tree, in one place, so no command module has to remember them:

- the global options (-f, --backend, --json, -v, -q) are accepted after the
  subcommand too. Each subcommand gets a copy that click parses like its own
  options, so a value of another option (`--args -v`) and anything after `--`
  are never mistaken for one;
- help shows placeholders as other CLIs do: `JOB`, `[JOB]`, `[ID]...`,
  `--in DURATION`, and nothing after a flag;
- a usage error is one line on stderr (exit 2), like every other error.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import typer
import typer.main

from . import Options, app, setup_logging

GLOBALS = ("manifest", "backend", "json", "verbose", "quiet")
GLOBAL_PANEL = "Global options"

# Placeholders that say what a value is; any other option shows its own name (`--queue QUEUE`).
METAVARS = {
    "--manifest": "PATH",
    "--backend": "URL",
    "--to": "URL",
    "--args": "JSON",
    "--kwargs": "JSON",
    "--at": "TIME",
    "--cron": "EXPR",
    "--every": "DURATION",
    "--jitter": "DURATION",
    "--timezone": "TZ",
    "--in": "DURATION",
    "--older-than": "DURATION",
    "--from": "FILE",
    "--output": "FILE",
    "--priority": "N",
    "--limit": "N",
    "--count": "N",
    "--workers": "N",
    "--queues": "A,B",
    "--status": "STATUS",
    "--log-format": "text|json",
    "--role": "all|scheduler|worker",
    "--metrics-port": "PORT",
    "--metrics-addr": "ADDRESS",
}


# typer may vendor its own click, so click's classes are recognised by the parts of them
# used here, declared once, never by importing a `click` that a clean install may not have.
@runtime_checkable
class ClickGroup(Protocol):
    """A command with subcommands (click.Group)."""

    commands: Mapping[str, Any]


@runtime_checkable
class ClickFlagOption(Protocol):
    """An option (click.Option): a flag or a counter takes no value."""

    is_flag: bool
    count: bool
    metavar: str | None


@runtime_checkable
class ClickError(Protocol):
    """click's ClickException: an error with its own message and exit code."""

    exit_code: int

    def format_message(self) -> str: ...

    def show(self) -> None: ...


@runtime_checkable
class ClickUsageError(ClickError, Protocol):
    """click's UsageError: knows the command it happened in (None before one is known)."""

    ctx: Any


def build_command() -> Any:
    """typer's command for `app`, with global options everywhere and plain placeholders."""
    root = typer.main.get_command(app)
    originals = [p for p in root.params if p.name in GLOBALS]
    for param in originals:
        param.callback = apply_global
    for command in _subcommands(root):
        command.params.extend(_inherited(p) for p in originals)
    for command in [root, *_subcommands(root)]:
        _plain_placeholders(command)
    return root


def _subcommands(group: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(group, ClickGroup):
        for command in group.commands.values():
            out += [command, *_subcommands(command)]
    return out


def _inherited(param: Any) -> Any:
    """A subcommand's copy of a global option: parsed there, stored in the shared Options."""
    twin = copy.copy(param)
    twin.expose_value = False  # the command function does not take it: Options does
    twin.envvar = None  # read once, by the original
    twin.rich_help_panel = GLOBAL_PANEL
    twin.callback = apply_global
    return twin


def apply_global(ctx: Any, param: Any, value: Any) -> Any:
    """Store a global option given on the command line (or from its env var) in Options.

    A value at its default (None, False, 0) was not given, so an option written
    before the subcommand is not undone by the subcommand's unused copy.
    """
    opts = ctx.find_object(Options)
    if opts is None or value in (None, False, 0):
        return value
    if param.name == "backend":
        from ..backends import url_problem

        problem = url_problem(value)
        if problem:
            raise typer.BadParameter(problem, ctx=ctx, param=param)
    if param.name == "verbose":
        opts.verbose += value
    else:
        setattr(opts, param.name, value)
    if param.name in ("verbose", "quiet") and ctx.parent is not None:
        setup_logging(opts.verbosity)  # the root already configured logging without it
    return value


# -- help placeholders ---------------------------------------------------------------


def _plain_placeholders(command: Any) -> None:
    ctx = command.context_class(command, info_name=command.name)
    for param in command.get_params(ctx):  # with --help, which click adds itself
        if param.param_type_name == "argument":
            _plain_argument(param)
        elif isinstance(param, ClickFlagOption) and (param.is_flag or param.count):
            param.metavar = ""  # a flag takes no value: show none
        elif param.metavar is None:
            longest = max(param.opts, key=len)
            param.metavar = METAVARS.get(longest, longest.lstrip("-").upper().replace("-", "_"))


def _plain_argument(param: Any) -> None:
    """`JOB` when required, `[JOB]` when optional, `[ID]...` for several."""
    base = (param.metavar or param.name).removesuffix("...").upper()
    many = param.nargs != 1
    param.metavar = base + ("..." if many else "")
    piece = base if param.required else f"[{base}]"
    piece += "..." if many else ""
    param.get_usage_pieces = lambda ctx: [piece]
    param.display_type_rich = lambda ctx: None  # the name already says what it is


# -- usage errors --------------------------------------------------------------------


def report_usage_error(exc: BaseException) -> int | None:
    """Print click's error as one line and return its exit code; None if `exc` is not one.

    typer may vendor its own click: the error is recognised as a `ClickError`.
    """
    from .output import error

    if not isinstance(exc, ClickError) or not isinstance(exc.exit_code, int):
        return None
    code = exc.exit_code
    if type(exc).__name__ == "NoArgsIsHelpError":  # `chronctl tasks`: the full help
        exc.show()
        return code
    from ..backends import redact_url

    # One line; and a URL typed where a command was expected keeps its password to itself.
    message = redact_url(" ".join(str(exc.format_message()).split()))
    if message[:2].istitle():  # "No such option" -> "no such option", as our own errors read
        message = message[0].lower() + message[1:]
    if isinstance(exc, ClickUsageError) and exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    error(message)
    return code
