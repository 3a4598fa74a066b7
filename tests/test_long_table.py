"""A long table (`schedules list` of 10,000 schedules) is laid out by chronctl, not by
rich's Table (12.9 s for 10,000 rows): the same columns; only the last one is cut."""

from __future__ import annotations

import json

import pytest

from chronctl.cli import output

COLUMNS = ["NAME", "JOB", "PAUSED", "NOTE", "LAST RESULT"]


def rows(count: int, tail: int) -> list[tuple[object, ...]]:
    return [
        (
            f"report-{i}",
            "customer_report",
            None,
            "é\x1b[31m" * (i % 3),
            output.styled("ok " * (i % tail), "green"),
        )
        for i in range(count)
    ]


def test_the_long_layout_is_the_table_layout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    data = rows(output.PLAIN_TABLE_ROWS + 1, 5)
    output.table(COLUMNS, data)
    fast = capsys.readouterr().out
    monkeypatch.setattr(output, "PLAIN_TABLE_ROWS", 10**9)
    output.table(COLUMNS, data)
    slow = capsys.readouterr().out
    assert [ln.rstrip() for ln in fast.splitlines()] == [ln.rstrip() for ln in slow.splitlines()]
    assert "\x1b" not in fast  # task data is shown escaped, NO_COLOR has no styling


@pytest.mark.parametrize("width", [100, 60])
def test_a_narrow_terminal_cuts_the_last_column_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], width: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setenv("NO_COLOR", "1")
    data = rows(output.PLAIN_TABLE_ROWS + 1, 40)
    output.table(COLUMNS, data)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(data) + 1
    start = lines[0].index("LAST RESULT")
    fixed = start + 14  # the columns before the last, and room for a cut last one
    limit = width if fixed <= width else fixed + 40
    for line, row in zip(lines[1:], data, strict=True):
        assert line.startswith(f"{row[0]} ") and " customer_report " in line
        assert len(line) <= limit
        full = "ok " * (int(str(row[0]).split("-")[1]) % 40)
        assert line[start:] == full or line[start:].endswith("…")


def test_a_long_json_list_is_the_same_value_one_item_per_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    value = [{"name": f"s{i}", "kwargs": {"t": "é\u2028<\x1b>"}, "n": i} for i in range(300)]
    output.print_json(value)
    text = capsys.readouterr().out
    assert json.loads(text) == value
    assert len(text.splitlines()) == len(value) + 2
    output.print_json(value[:3])  # short: indented as ever
    assert json.loads(capsys.readouterr().out) == value[:3]
