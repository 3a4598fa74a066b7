"""Generate man/chronctl.1 from the CLI definition, so the page cannot drift.

python man/generate.py            # write man/chronctl.1
python man/generate.py --check    # exit 1 if the page is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chronctl import __version__  # noqa: E402
from chronctl.cli import app  # noqa: E402
from chronctl.cli.command import GLOBAL_PANEL, build_command  # noqa: E402

PAGE = ROOT / "man" / "chronctl.1"


def esc(text: str) -> str:
    text = text.replace("\\[", "[")  # rich markup's escaped bracket: a plain one here
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join(("\\&" + ln) if ln.startswith((".", "'")) else ln for ln in text.splitlines())


def first_paragraph(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ")


def options(command: Any) -> list[str]:
    out: list[str] = []
    ctx = context(command)
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if getattr(param, "rich_help_panel", None) == GLOBAL_PANEL:
            continue  # a subcommand's copy of a global option: listed once, above
        record = param.get_help_record(ctx)
        if record:
            out += [".TP", f"\\fB{esc(record[0])}\\fR", esc(record[1])]
    return out


def context(command: Any) -> Any:
    return command.context_class(command)


def walk(group: Any, prefix: str) -> list[str]:
    out: list[str] = []
    ctx = context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        full = f"{prefix} {name}".strip()
        if hasattr(command, "list_commands"):
            out += walk(command, full)
            continue
        usage = " ".join(command.collect_usage_pieces(context(command)))
        out += [
            ".SS",
            f"chronctl {esc(full)} {esc(usage)}".rstrip(),
            esc(first_paragraph(command.help)),
        ]
        out += options(command)
    return out


def render() -> str:
    root = build_command()
    lines = [
        f'.TH CHRONCTL 1 "" "chronctl {__version__}" "User Commands"',
        ".SH NAME",
        "chronctl \\- a cron replacement and task queue",
        ".SH SYNOPSIS",
        "\\fBchronctl\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
        ".SH DESCRIPTION",
        esc(first_paragraph(app.info.help)),
        ".SH GLOBAL OPTIONS",
        "Accepted before or after the subcommand: \\fBchronctl tasks list \\-\\-json\\fR"
        " is \\fBchronctl \\-\\-json tasks list\\fR.",
        *options(root),
        ".SH COMMANDS",
        *walk(root, ""),
        ".SH EXIT STATUS",
        "0 success; 1 the operation failed (unknown job or task, unreachable backend);",
        "2 usage or manifest error (bad arguments, bad JSON or duration, broken manifest).",
        "Every error, usage errors included, is one line on stderr"
        " (\\fB\\-v\\fR adds the traceback).",
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBCHRONCTL_MANIFEST\\fR",
        "Manifest path when \\fB\\-f\\fR is not given.",
        ".TP",
        "\\fBCHRONCTL_BACKEND\\fR",
        "Backend URL when \\fB\\-\\-backend\\fR is not given.",
        ".TP",
        "\\fBNO_COLOR\\fR",
        "Disable colours.",
        ".SH SEE ALSO",
        "crontab(5), the chronctl README.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not PAGE.exists() or PAGE.read_text() != text:
            print("man/chronctl.1 is out of date: run python man/generate.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
