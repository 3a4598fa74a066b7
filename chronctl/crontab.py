"""Turn a crontab into a manifest: `chronctl import-crontab`.

Cron runs each command line through `/bin/sh -c` with the environment lines
above it; so does the imported job (`command = ["/bin/sh", "-c", LINE]`),
which keeps pipes, redirections and `&&` working exactly as before.
Anything that cannot be mapped is skipped with a warning naming its line,
and the written manifest always passes `chronctl validate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from croniter import croniter

from .errors import UsageError

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


@dataclass
class Imported:
    jobs: list[CronJob]
    warnings: list[str]

    def manifest(self) -> dict[str, Any]:
        jobs: dict[str, Any] = {}
        for job in self.jobs:
            shell = job.env.get("SHELL", "/bin/sh")
            command = job.command
            if job.stdin is not None:
                # cron feeds the text after an unescaped % to the command's stdin
                command = f"printf '%s\\n' {_sh_quote(job.stdin)} | {command}"
            table: dict[str, Any] = {"command": [shell, "-c", command]}
            if job.schedule is not None:
                table["cron"] = job.schedule
            env = {
                k: v for k, v in job.env.items() if k not in ("SHELL", "MAILTO", "CRON_TZ", "TZ")
            }
            if env:
                table["env"] = env
            if job.timezone:
                table["timezone"] = job.timezone
            if job.user and job.user != "root":
                table["user"] = job.user
            jobs[job.name] = table
        return {"jobs": jobs}

    def toml(self, source: str) -> str:
        import tomli_w

        header = [
            f"# Imported from {source} by `chronctl import-crontab`.",
            "# Each job runs its line through the shell, as cron did.",
        ]
        for job in self.jobs:
            header.append(f"#   {job.name}: line {job.line}: {job.source}")
        for warning in self.warnings:
            header.append(f"# warning: {warning}")
        return "\n".join(header) + "\n\n" + tomli_w.dumps(self.manifest())


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


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


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _job_name(command: str, taken: set[str]) -> str:
    words = [w for w in re.split(r"\s+", command.strip()) if w and "=" not in w]
    skip = {"cd", "test", "[", "nice", "ionice", "flock", "timeout", "sudo", "env", "-n", "-c"}
    base = ""
    for word in words:
        word = word.strip("()&|;'\"")
        if not word or word in skip or word.startswith("-") or word.startswith("/dev/"):
            continue
        base = _NAME.sub("_", Path(word).name.lower()).strip("_")
        if base:
            break
    base = base or "job"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def parse_crontab(text: str, source: str = "crontab", system: bool | None = None) -> Imported:
    """Parse a user crontab, or /etc/crontab and cron.d files (with a user column)."""
    env: dict[str, str] = {}
    jobs: list[CronJob] = []
    warnings: list[str] = []
    taken: set[str] = set()
    timezone: str | None = None
    if system is None:
        system = _looks_system(text)
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
            if key == "MAILTO":
                warnings.append(
                    f"{where}: MAILTO={value or '(empty)'}: chronctl sends no "
                    "mail; add an on_failure job that mails or calls a webhook"
                )
            elif key in ("CRON_TZ", "TZ"):
                timezone = _valid_timezone(value, where, warnings)
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
        command, stdin = _split_percent(rest.strip())
        if not command.strip():
            warnings.append(f"{where}: no command: line skipped")
            continue
        name = _job_name(command, taken)
        job = CronJob(
            name=name,
            schedule=schedule,
            command=command.strip(),
            line=number,
            source=line,
            env=dict(env),
            user=user,
            timezone=timezone,
            stdin=stdin,
        )
        if schedule is None:
            warnings.append(
                f"{where}: @reboot has no chronctl trigger: job '{name}' has none; "
                f"run `chronctl trigger {name}` from a boot-time unit"
            )
        if user and user != "root":
            warnings.append(
                f"{where}: job '{name}' runs as '{user}': chronctl must run as root for that"
            )
        jobs.append(job)
    return Imported(jobs, warnings)


def _valid_timezone(value: str, where: str, warnings: list[str]) -> str | None:
    from .triggers import get_timezone

    if not value:
        return None
    try:
        get_timezone(value)
    except Exception:
        warnings.append(f"{where}: unknown timezone '{value}': the jobs below use UTC")
        return None
    return value


def _looks_system(text: str) -> bool:
    """A system crontab has a user name where a user crontab's command begins."""
    import pwd

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
