"""Logging setup: text or JSON lines, to stderr or to a file that survives logrotate.

A daemon's log file is reopened when logrotate moves it away
(WatchedFileHandler), so no `copytruncate` or signal is needed, and it is
created readable by its owner only.

A worker logs a line per finished run: written one by one, the lines would
cost a write (and, for the file, a stat) each, a noticeable share of a busy
worker's time. So a log file, and stderr when it is a file or a pipe, get the
lines in batches: at most FLUSH_INTERVAL late, at once on a clean stop
(logging's own shutdown, which the daemon calls before it exits). A terminal
gets every line at once.

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
import threading
import time
import weakref
from pathlib import Path
from typing import Any, TextIO

from .errors import UsageError
from .text import safe

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


FLUSH_INTERVAL = 0.2  # seconds a batched line waits at most
FLUSH_LINES = 1000  # a batch this long is written at once


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT` with the message on one escaped line; a traceback keeps its lines.

    Built by hand rather than by `Formatter.format` on a copy of the record: the
    record is left untouched for other handlers, and a worker's line costs a few
    microseconds (the timestamp's text is reused within a second)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{self.formatTime(record)} {record.levelname} {record.name}: "
            f"{safe(record.getMessage())}"
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return safe(line, lines=True)


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


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that writes its lines in batches (see the module docstring).

    A flusher thread, started with the first line, writes what waits every
    FLUSH_INTERVAL while lines come; `flush()` and `close()` write the rest.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lines: list[str] = []
        self._due = threading.Event()
        self._flusher: threading.Thread | None = None
        self._closing = False
        _BATCHED.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        # Called with self.lock held (Handler.handle): the flusher takes it too.
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        if len(self._lines) >= FLUSH_LINES:
            self._write_lines()
        elif len(self._lines) == 1:
            self._wake_flusher()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_lines()
            super().flush()
        finally:
            self.release()

    def close(self) -> None:
        self._closing = True
        self._due.set()
        self.flush()
        super().close()

    def _wake_flusher(self) -> None:
        if self._flusher is None and not self._closing:
            self._flusher = threading.Thread(
                target=self._flush_every_interval, name="chronctl-log-flush", daemon=True
            )
            self._flusher.start()
        self._due.set()

    def _flush_every_interval(self) -> None:
        while not self._closing:
            self._due.wait()
            time.sleep(FLUSH_INTERVAL)
            self._due.clear()  # before the flush: a line logged during it sets it again
            self.flush()

    def _write_lines(self) -> None:
        if not self._lines or self.stream is None:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        try:
            self._write(text)
        except (OSError, ValueError):  # a full disk or a closed stream must not stop a run,
            pass  # and there is nowhere left to say so

    def _write(self, text: str) -> None:
        self.stream.write(text)

    def _forked(self) -> None:
        """In a child forked by a job: the parent's lines are the parent's to write, and
        its flusher thread did not come along."""
        self._lines = []
        self._due = threading.Event()
        self._flusher = None


class BatchedFileHandler(BatchedStreamHandler, logging.handlers.WatchedFileHandler):
    """Batched, and reopened when logrotate moves the file: checked once per batch."""

    def _write(self, text: str) -> None:
        self.reopenIfNeeded()
        super()._write(text)


_BATCHED: weakref.WeakSet[BatchedStreamHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_BATCHED):
        handler._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def stderr_handler(stream: TextIO) -> logging.Handler:
    """Lines at once on a terminal (someone is watching); batched into a file or pipe."""
    try:
        interactive = stream.isatty()
    except ValueError:  # a closed stderr: nobody reads a batch either
        interactive = True
    return logging.StreamHandler(stream) if interactive else BatchedStreamHandler(stream)


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
        handler = BatchedFileHandler(file, encoding="utf-8")
    else:
        handler = stderr_handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # No format here shows a line's caller, thread or process, and looking them up is
    # most of what a worker's line costs: the Logging HOWTO's "Optimization" switches.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    if verbosity <= 1:  # client libraries' chatter ("Purging queue ...") only with -vv
        for library in ("aiosqlite", "asyncio", "aio_pika", "aiormq"):
            logging.getLogger(library).setLevel(logging.WARNING)
