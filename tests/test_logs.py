"""The batched log handlers and the text formatter (chronctl/logs.py)."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

from chronctl.logs import BatchedFileHandler, BatchedStreamHandler, TextFormatter, stderr_handler


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("bad\x1b[2Jthing")
        except RuntimeError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord("chronctl.worker", logging.INFO, __file__, 1, msg, args, exc_info)


def test_text_line_escapes_the_message_and_leaves_the_record_alone() -> None:
    rec = record("end job=%s error=%s", "x", "line\nforged \x1b[31m")
    line = TextFormatter().format(rec)
    assert line.endswith(" INFO chronctl.worker: end job=x error=line\\nforged \\x1b[31m")
    assert "\n" not in line
    assert (rec.msg, rec.args) == ("end job=%s error=%s", ("x", "line\nforged \x1b[31m"))


def test_text_line_matches_the_standard_format() -> None:
    rec = record("fired job=%s", "a")
    expected = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(rec)
    assert TextFormatter().format(rec) == expected


def test_a_traceback_keeps_its_lines_but_not_its_control_characters() -> None:
    text = TextFormatter().format(record("failed", exc=True))
    assert text.count("\n") >= 2 and "\x1b" not in text
    assert text.splitlines()[-1] == "RuntimeError: bad\\x1b[2Jthing"


def test_lines_wait_for_a_flush_and_none_is_lost() -> None:
    stream = io.StringIO()
    handler = BatchedStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(5):
        handler.handle(record("line %d", i))
    handler.flush()
    assert stream.getvalue() == "".join(f"line {i}\n" for i in range(5))
    handler.handle(record("last"))
    handler.close()  # logging.shutdown closes every handler at exit
    assert stream.getvalue().endswith("line 4\nlast\n")


def test_the_log_file_is_reopened_when_logrotate_moves_it(tmp_path: Path) -> None:
    path = tmp_path / "chronctl.log"
    handler = BatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(record("before"))
        handler.flush()
        path.rename(tmp_path / "chronctl.log.1")
        handler.handle(record("after"))
        handler.flush()
    finally:
        handler.close()
    assert (tmp_path / "chronctl.log.1").read_text() == "before\n"
    assert path.read_text() == "after\n"


def test_a_forked_child_does_not_write_the_parents_lines(tmp_path: Path) -> None:
    path = tmp_path / "chronctl.log"
    handler = BatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(record("parent"))
        pid = os.fork()
        if pid == 0:  # the child: what a job that forks would do at its exit
            handler.handle(record("child"))
            handler.flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        handler.flush()
    finally:
        handler.close()
    assert sorted(path.read_text().splitlines()) == ["child", "parent"]


def test_a_terminal_gets_each_line_at_once() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not isinstance(stderr_handler(Terminal()), BatchedStreamHandler)
    assert isinstance(stderr_handler(io.StringIO()), BatchedStreamHandler)
