"""Durations as people write them in manifests and on the command line.

"6h30m", "500ms", "7d" and plain numbers (seconds) all become float seconds,
so the rest of the code never parses strings.
"""

from __future__ import annotations

import re

from .errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# Longer than any schedule needs, short enough that now + it is still a date Python can
# hold: "99999999999d" is a typo to report, not a year-273-million fire time to crash on.
MAX_SECONDS = 100 * 365 * 86400.0
_TOO_LONG = "must be at most 100 years (36500d)"


def parse_duration(value: str | int | float, *, what: str = "duration") -> float:
    """Return seconds; raise UsageError naming `what` for anything else."""
    if isinstance(value, bool):
        raise UsageError(f"bad {what} {value!r}: expected e.g. '30s', '10m', '6h30m', '7d'")
    if isinstance(value, int | float):
        if value < 0:
            raise UsageError(f"bad {what} {shorten(value)}: must not be negative")
        if value != value or value == float("inf"):  # TOML has nan and inf literals
            raise UsageError(f"bad {what} {value!r}: must be a finite, non-negative number")
        return _bounded(value, value, what)
    if not isinstance(value, str):
        raise UsageError(f"bad {what} {value!r}: expected e.g. '30s', '10m', '6h30m', '7d'")
    text = value.strip().lower().replace(" ", "")
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number < 0 or number != number:
            raise UsageError(f"bad {what} {shorten(value)}: must be a finite, non-negative number")
        return _bounded(number, value, what)
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise UsageError(
            f"bad {what} {shorten(value)}: expected e.g. '500ms', '30s', '10m', '6h30m', '7d'"
        )
    return _bounded(total, value, what)


def _bounded(seconds: float, value: object, what: str) -> float:
    if seconds > MAX_SECONDS:  # inf included
        raise UsageError(f"bad {what} {shorten(value)}: {_TOO_LONG}")
    return float(seconds)


def shorten(value: object) -> str:
    """The value as typed, cut short: a 5,000-digit number is not worth a screenful
    (and Python refuses to print an int past 4,300 digits)."""
    if isinstance(value, int) and value.bit_length() > 128:
        digits = int(value.bit_length() * 0.30103) + 1  # log10(2): no str() needed
        return f"(a {'negative ' if value < 0 else ''}{digits}-digit number)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_duration(seconds: float) -> str:
    """Shortest exact-ish human form, the inverse of parse_duration for whole units."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    remaining = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            count, remaining = divmod(remaining, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
