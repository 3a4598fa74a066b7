"""Turn a crontab into a manifest: `chronctl import-crontab`.

The imported manifest must behave as the crontab did under cron:

- cron runs in the host's local zone, so the manifest gets
  `[scheduler] timezone` = the host's zone (`TZ`, then /etc/localtime);
  `CRON_TZ=` lines still set a job's own zone.
- each line stays one shell line (`command = "LINE"`), which chronctl runs
  with `/bin/sh -c` as cron does, or with the crontab's `SHELL`.
- the text after an unescaped `%` is the whole line's stdin, as in cron.
- a job runs in the crontab owner's home directory, as under cron.

Anything that cannot be mapped is skipped with a warning naming its line,
and the written manifest passes `chronctl validate`.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from croniter import croniter

from .errors import UsageError
from .jobs import DEFAULT_SHELL, JobSpec
from .manifest import shell_problem
from .triggers import get_timezone

MACROS = {
    "@yearly": "@yearly",
    "@annually": "@yearly",
    "@monthly": "@monthly",
    "@weekly": "@weekly",
    "@daily": "@daily",
    "@midnight": "@daily",
    "@hourly": "@hourly",
}
_ENV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_NAME = re.compile(r"[^a-z0-9_]+")
UTC_ALIASES = frozenset(
    {"Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Universal", "Zulu"}
)
# Environment lines that configure cron itself rather than the job.
CRON_ONLY_ENV = ("SHELL", "MAILTO", "CRON_TZ")


@dataclass
class CronJob:
    name: str
    schedule: str | None  # None: @reboot (no trigger)
    command: str
    line: int
    source: str
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    timezone: str | None = None
    stdin: str | None = None

    @property
    def shell_line(self) -> str:
        """The line as chronctl's shell runs it: stdin, if any, feeds all of it."""
        if self.stdin is None:
            return self.command
        # A group, not `printf | LINE`: in `cd /x && cat > f` cron's stdin reaches
        # `cat`, not only `cd`. Newlines keep a trailing `&` or `# comment` harmless.
        return f"printf '%s\\n' {_sh_quote(self.stdin)} | {{\n{self.command}\n}}"


@dataclass
class Imported:
    jobs: list[CronJob]
    warnings: list[str]
    timezone: str = "UTC"  # the host's: cron's schedules are in local time

    def manifest(self) -> dict[str, Any]:
        jobs: dict[str, Any] = {}
        for job in self.jobs:
            table: dict[str, Any] = {"command": job.shell_line}
            shell = job.env.get("SHELL") or DEFAULT_SHELL
            if shell != DEFAULT_SHELL:
                table["shell"] = shell
            if job.schedule is not None:
                table["cron"] = job.schedule
            if job.timezone:
                table["timezone"] = job.timezone
            if job.user and job.user != "root":
                table["user"] = job.user  # runs in that user's home
            else:
                table["cwd"] = "~"  # cron runs a job in its owner's home
            env = {k: v for k, v in job.env.items() if k not in CRON_ONLY_ENV}
            if env:
                table["env"] = env
            jobs[job.name] = table
        # cron ran a line once per fire, whatever its exit status; a shell line is rarely
        # safe to run twice, so the import keeps that and a retry is an explicit choice.
        return {
            "scheduler": {"timezone": self.timezone},
            "defaults": {"max_retries": 0},
            "jobs": jobs,
        }

    def toml(self, source: str) -> str:
        header = [
            f"# Imported from {source} by `chronctl import-crontab`.",
            f"# Times are in {self.timezone}, this host's zone, as under cron. Each command",
            "# is a shell line, run with /bin/sh -c (or `shell`) in the owner's home, and",
            "# runs once per fire as under cron (max_retries = 0: raise it where a retry is safe).",
        ]
        for job in self.jobs:
            header.append(f"#   {job.name}: line {job.line}: {job.source}")
        for warning in self.warnings:
            header.append(f"# warning: {warning}")
        return "\n".join(header) + "\n\n" + tomli_w.dumps(self.manifest())


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# -- the host's timezone -------------------------------------------------------


def host_timezone(
    environ: Mapping[str, str] | None = None,
    localtime: Path = Path("/etc/localtime"),
    timezone_file: Path = Path("/etc/timezone"),
) -> tuple[str, str | None]:
    """(zone, warning): `TZ`, then /etc/localtime, then /etc/timezone, else UTC."""
    environ = os.environ if environ is None else environ
    warning = None
    tz = environ.get("TZ", "").strip()
    if tz:
        name = _zone_name(tz.removeprefix(":"))
        if name is not None:
            return name, None
        warning = f"TZ='{tz}' is not a zone name chronctl knows; using {localtime}"
    for guess in (_from_localtime(localtime), _from_timezone_file(timezone_file)):
        if guess is not None:
            return guess, warning
    return "UTC", "cannot tell this host's timezone: the jobs use UTC; set [scheduler] timezone"


def _zone_name(text: str) -> str | None:
    """A zone name from `America/New_York` or a path into a zoneinfo directory."""
    name = text.strip()
    if "zoneinfo/" in name:
        name = name.split("zoneinfo/", 1)[1].removeprefix("posix/")
    if not name or name.startswith(("/", ".")):
        return None
    try:
        get_timezone(name)
    except UsageError:
        return None
    return "UTC" if name in UTC_ALIASES else name


def _from_localtime(path: Path) -> str | None:
    try:
        if path.is_symlink():
            return _zone_name(os.path.realpath(path)) or _zone_name(os.readlink(path))
        data = path.read_bytes()
    except OSError:
        return None
    return _zone_with_bytes(data)


def _from_timezone_file(path: Path) -> str | None:
    try:
        lines = path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return _zone_name(lines[0]) if lines else None


def _zone_with_bytes(data: bytes) -> str | None:
    """A copied /etc/localtime: the zone whose tzdata file it is (Area/City preferred)."""
    matches = []
    for base in zoneinfo.TZPATH:
        for name in zoneinfo.available_timezones():
            try:
                if (Path(base) / name).read_bytes() == data:
                    matches.append(name)
            except OSError:
                continue
        if matches:
            break
    legacy = ("Etc/", "US/", "SystemV/", "posix/", "right/")
    matches.sort(key=lambda n: ("/" not in n or n.startswith(legacy), n))
    return matches[0] if matches else None


# -- the line ----------------------------------------------------------------------


def _split_percent(command: str) -> tuple[str, str | None]:
    """cron: an unescaped % ends the command; the rest, % as newlines, is stdin."""
    parts: list[list[str]] = [[]]
    i = 0
    while i < len(command):
        c = command[i]
        if c == "\\" and i + 1 < len(command) and command[i + 1] == "%":
            parts[-1].append("%")
            i += 2
            continue
        if c == "%":
            parts.append([])
        else:
            parts[-1].append(c)
        i += 1
    texts = ["".join(p) for p in parts]
    return texts[0], ("\n".join(texts[1:]) if len(texts) > 1 else None)


def _stray_percent(command: str) -> str | None:
    """The word holding the first unescaped % that was likely meant literally.

    `mail -s hi ops%Dear ops,%...` uses % as cron means it; `date +%Y`, `-w 20%`
    and a % inside quotes are usually a missing backslash.
    """
    quote = ""
    i = 0
    while i < len(command):
        c = command[i]
        if c == "\\" and quote != "'":
            i += 2
            continue
        if c in "'\"" and quote in ("", c):
            quote = "" if quote else c
        elif c == "%":
            start = max(command.rfind(" ", 0, i), command.rfind("\t", 0, i)) + 1
            word = command[start:].split(None, 1)[0]
            after = command[i + 1 : i + 2]
            percentage = i > 0 and command[i - 1].isdigit() and (not after or after.isspace())
            if quote or percentage or word.lstrip("'\"").startswith("+"):
                return word
        i += 1
    return None


# -- naming --------------------------------------------------------------------------

# Commands that guard or prepare the real work: `test -x X || ...`, `cd /d && ...`.
GUARDS = frozenset({"test", "[", "[[", "cd", "true", "false", ":", "sleep", "exit", "export"})
# Wrappers: the real command follows their options, (options taking a value), and
# for some one positional value (flock's lock file, timeout's duration).
WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "nice": (frozenset({"-n"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p"}), 0),
    "sudo": (frozenset({"-u", "-g"}), 0),
    "env": (frozenset({"-u"}), 0),
    "timeout": (frozenset({"-s", "-k"}), 1),
    "flock": (frozenset({"-w", "-E"}), 1),
    "setlock": (frozenset(), 1),
    "nohup": (frozenset(), 0),
    "exec": (frozenset(), 0),
    "time": (frozenset(), 0),
    "chronic": (frozenset(), 0),
    "cronic": (frozenset(), 0),
}
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})
# Programs whose first argument is the work: `python3 x.py`, `run-parts /etc/cron.daily`.
RUNNERS = SHELLS | {"python", "python3", "perl", "ruby", "php", "node", "run-parts"}
# Programs whose subcommand says what they do: `./manage.py clearsessions`.
DISPATCHERS = frozenset({"manage", "artisan", "console", "rake", "rails", "drush", "wp", "make"})
_OPERATORS = frozenset({"&&", "||", ";", "|", "&", "(", ")", ";;", "|&", "{", "}"})
_REDIRECTS = re.compile(r"^\d*(>>?|<<?|>&|<&|&>>?|>\|)$")


def _words(command: str) -> list[list[str]]:
    """The line's simple commands, as words, without redirections."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        tokens = command.split()
    commands: list[list[str]] = [[]]
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in _OPERATORS:
            commands.append([])
        elif _REDIRECTS.match(token):
            skip = True  # the redirection's target
            if commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()  # the fd of `2>&1`
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _program(word: str) -> str:
    name = Path(word).name
    for ext in (".sh", ".py", ".pl", ".rb", ".php", ".bash"):
        name = name.removesuffix(ext)
    return _NAME.sub("_", name.lower()).strip("_")


def _unwrap(words: list[str]) -> list[str]:
    """Drop leading `VAR=value` words and wrappers such as `nice -n 10` or `flock L`."""
    while words and (_ENV.match(words[0]) or Path(words[0]).name in WRAPPERS):
        if _ENV.match(words[0]):
            words = words[1:]
            continue
        with_value, positional = WRAPPERS[Path(words[0]).name]
        words = words[1:]
        while words and (words[0].startswith("-") or _ENV.match(words[0])):
            words = words[2:] if words[0] in with_value else words[1:]
        words = words[positional:]
    return words


def _name_of(words: list[str]) -> str | None:
    """A name for one simple command, or None for a guard such as `test -x ...`."""
    words = _unwrap(words)
    if not words or Path(words[0]).name in GUARDS:
        return None
    head, rest = Path(words[0]).name, words[1:]
    if head in SHELLS and "-c" in rest[:-1]:
        return _line_name(rest[rest.index("-c") + 1])
    arguments = [w for w in rest if not w.startswith("-")]
    if head in RUNNERS and arguments:
        return _name_of(arguments)
    program = _program(words[0])
    if program in DISPATCHERS and arguments:
        return f"{program}_{_program(arguments[0])}".strip("_")
    return program or None


def _line_name(command: str) -> str:
    """The first command doing the work, not the guard or `cd` before it."""
    simple = _words(command)
    names = [n for n in (_name_of(w) for w in simple) if n]
    return names[0] if names else (_program(simple[0][0]) if simple else "")


def _job_name(command: str, taken: set[str]) -> str:
    base = _line_name(command) or "job"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


# -- parsing ---------------------------------------------------------------------------


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_crontab(
    text: str, source: str = "crontab", system: bool | None = None, timezone: str | None = None
) -> Imported:
    """Parse a user crontab, or /etc/crontab and cron.d files (with a user column).

    `timezone` is the zone cron ran in; None: this host's (`TZ`, /etc/localtime).
    """
    env: dict[str, str] = {}
    jobs: list[CronJob] = []
    warnings: list[str] = []
    taken: set[str] = set()
    cron_tz: str | None = None
    if timezone is None:
        timezone, warning = host_timezone()
        if warning:
            warnings.append(warning)
    if system is None:
        system = _looks_system(text)
    checker = _SyntaxChecker(warnings)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source}:{number}"
        if not line or line.startswith("#"):
            continue
        match = _ENV.match(line)
        if (
            match
            and not line.startswith("@")
            and not line[0].isdigit()
            and not line.startswith("*")
        ):
            key, value = match.group(1), _unquote(match.group(2))
            if key == "MAILTO" and value:  # MAILTO="" turns mail off: nothing to say
                warnings.append(
                    f"{where}: MAILTO={value}: chronctl sends no mail; set on_failure "
                    "in [defaults] to a job that mails or calls a webhook"
                )
            elif key in ("CRON_TZ", "TZ"):
                cron_tz = _valid_timezone(value, where, warnings, timezone)
            env[key] = value
            continue
        fields = line.split(None, 5 if not line.startswith("@") else 1)
        if line.startswith("@"):
            macro = fields[0].lower()
            rest = fields[1] if len(fields) > 1 else ""
            if macro == "@reboot":
                schedule = None
            elif macro in MACROS:
                schedule = MACROS[macro]
            else:
                warnings.append(f"{where}: unknown macro {fields[0]}: line skipped")
                continue
        else:
            if len(fields) < 6:
                warnings.append(f"{where}: expected 5 time fields and a command: line skipped")
                continue
            schedule = " ".join(fields[:5])
            rest = fields[5]
            if not croniter.is_valid(schedule):
                warnings.append(f"{where}: bad schedule '{schedule}': line skipped")
                continue
        user = None
        if system:
            parts = rest.split(None, 1)
            if len(parts) < 2:
                warnings.append(f"{where}: expected a user and a command: line skipped")
                continue
            user, rest = parts
        rest = rest.strip()
        stray = _stray_percent(rest)
        if stray is not None:
            warnings.append(
                f"{where}: unescaped % in '{stray}' ends the command there (cron feeds "
                "the rest to stdin): write \\% for a literal %"
            )
        command, stdin = _split_percent(rest)
        command = command.strip()
        if not command:
            warnings.append(f"{where}: no command: line skipped")
            continue
        job = CronJob(
            name="",
            schedule=schedule,
            command=command,
            line=number,
            source=line,
            env=dict(env),
            user=user,
            timezone=cron_tz,
            stdin=stdin,
        )
        problem = checker.problem(job)
        if problem is not None:
            warnings.append(f"{where}: {problem}: line skipped (it fails every run under cron)")
            continue
        job.name = _job_name(command, taken)
        if schedule is None:
            warnings.append(
                f"{where}: @reboot has no chronctl trigger: job '{job.name}' has none; "
                f"run `chronctl trigger {job.name}` from a boot-time unit"
            )
        if user and user != "root":
            warnings.append(
                f"{where}: job '{job.name}' runs as '{user}': chronctl must run as root for that"
            )
        jobs.append(job)
    return Imported(jobs, warnings, timezone)


class _SyntaxChecker:
    """Asks the line's shell whether it parses; a shell missing here is said once."""

    def __init__(self, warnings: list[str]) -> None:
        self.warnings = warnings
        self.missing: set[str] = set()

    def problem(self, job: CronJob) -> str | None:
        shell = job.env.get("SHELL") or DEFAULT_SHELL
        # The line as written: the stdin wrapper is chronctl's, not the user's to debug.
        found = shell_problem(JobSpec(name="cron", command=job.command, shell=shell))
        if found is None or not found.startswith("shell '"):
            return found
        if shell not in self.missing:
            self.missing.add(shell)
            self.warnings.append(f"SHELL={shell}: {found} on this host")
        return None


def _valid_timezone(value: str, where: str, warnings: list[str], host: str) -> str | None:
    if not value:
        return None
    try:
        get_timezone(value)
    except Exception:
        warnings.append(f"{where}: unknown timezone '{value}': the jobs below use {host}")
        return None
    return value


def _looks_system(text: str) -> bool:
    """A system crontab has a user name where a user crontab's command begins."""
    users = {p.pw_name for p in pwd.getpwall()}
    votes, roots = 0, 0
    for raw in text.splitlines():
        line = raw.strip()
        if (
            not line
            or line.startswith("#")
            or (_ENV.match(line) and not line[0].isdigit() and not line.startswith(("*", "@")))
        ):
            continue
        fields = line.split()
        index = 1 if line.startswith("@") else 5
        if len(fields) > index + 1:
            votes += 1 if fields[index] in users else -1
            roots += fields[index] == "root"
    # Commands named like users exist (mail, backup): one such line proves nothing.
    return votes > 0 and (roots > 0 or votes >= 3)


def import_crontab(path: Path, system: bool | None = None) -> tuple[Imported, str]:
    if system is None and (str(path) == "/etc/crontab" or path.parent == Path("/etc/cron.d")):
        system = True
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    imported = parse_crontab(text, str(path), system)
    return imported, imported.toml(str(path))
