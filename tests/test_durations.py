"""Durations as users write them: every accepted form and the refusals."""

from __future__ import annotations

import pytest

from chronctl.durations import format_duration, parse_duration
from chronctl.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("6h30m", 23400.0),
        ("1d", 86400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("1.5h", 5400.0),
        ("1h 30m", 5400.0),
        (" 90S ", 90.0),
        ("1m30s500ms", 90.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("2.5", 2.5),
        (30, 30.0),
        (0, 0.0),
        (1.25, 1.25),
    ],
)
def test_parse_duration_accepts(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "soon",
        "-5s",
        "5x",
        "s",
        "1h-30m",
        "1.5.5s",
        "ms5",
        "10 minutes",
        "inf",
        "nan",
        "-1",
        -1,
        -0.5,
        True,
        False,
        None,
        [1],
        {"s": 1},
        float("inf"),
        float("nan"),
    ],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert "bad duration" in str(info.value)


def test_parse_duration_names_what_was_bad() -> None:
    with pytest.raises(UsageError, match=r"bad --in 'later'"):
        parse_duration("later", what="--in")


def test_usage_error_exit_code_is_2() -> None:
    with pytest.raises(UsageError) as info:
        parse_duration("nope")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (0.001, "1ms"),
        (1, "1s"),
        (30, "30s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (23400, "6h30m"),
        (86400, "1d"),
        (604800, "7d"),
        (90061, "1d1h1m1s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 45, 60, 61, 3600, 3661, 86400, 93784, 0.25])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
