"""Durations as people write them in manifests and on the command line.

"6h30m", "500ms", "7d" and plain numbers (seconds) all become float seconds,
so the rest of the code never parses strings.
"""

from __future__ import annotations

import re

from .errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: str | int | float, *, what: str = "duration") -> float:
    """Return seconds; raise UsageError naming `what` for anything else."""
    if isinstance(value, bool):
        raise UsageError(f"bad {what} {value!r}: expected e.g. '30s', '10m', '6h30m', '7d'")
    if isinstance(value, int | float):
        if value < 0:
            raise UsageError(f"bad {what} {value!r}: must not be negative")
        if value != value or value == float("inf"):  # TOML has nan and inf literals
            raise UsageError(f"bad {what} {value!r}: must be a finite, non-negative number")
        return float(value)
    if not isinstance(value, str):
        raise UsageError(f"bad {what} {value!r}: expected e.g. '30s', '10m', '6h30m', '7d'")
    text = value.strip().lower().replace(" ", "")
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number < 0 or number != number or number == float("inf"):
            raise UsageError(f"bad {what} {value!r}: must be a finite, non-negative number")
        return number
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise UsageError(
            f"bad {what} {value!r}: expected e.g. '500ms', '30s', '10m', '6h30m', '7d'"
        )
    return total


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
