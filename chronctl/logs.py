"""Logging setup: text or JSON lines, to stderr or to a file that survives logrotate.

A daemon's log file is reopened when logrotate moves it away
(WatchedFileHandler), so no `copytruncate` or signal is needed, and it is
created readable by its owner only.

Log messages carry task data (errors, queue names): the text format escapes
their control characters, so a task can neither drive the terminal tailing
the log nor forge a second log line with a newline. JSON lines need nothing
more: `json.dumps` escapes control characters already.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError
from .text import safe

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT` with the message on one escaped line; a traceback keeps its lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        # A copy: other handlers of the same record must see the original message.
        clean = logging.makeLogRecord(record.__dict__)
        clean.msg, clean.args = safe(record.getMessage()), None
        return safe(super().format(clean), lines=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` fields (job, task, duration...) become keys."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def open_private(path: Path) -> None:
    """Create `path` mode 0600 if missing, refusing to follow a symlink planted there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.close(fd)


def configure(verbosity: int = 0, fmt: str = "text", file: Path | None = None) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    if fmt not in ("text", "json"):
        raise UsageError(f"bad log format '{fmt}': expected text or json")
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        open_private(file)
        handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    if verbosity <= 1:  # client libraries' chatter ("Purging queue ...") only with -vv
        for library in ("aiosqlite", "asyncio", "aio_pika", "aiormq"):
            logging.getLogger(library).setLevel(logging.WARNING)
