"""Durations (`20m`, `1h30m`) and sizes (`4g`, `512m`) as maintainers write them in gantry.yml."""

from __future__ import annotations

import re
from datetime import timedelta

# ASCII only, here and in SIZE_RE: `\d` alone took any script's digits (Arabic-Indic 3 and 0
# then `s` read as 30 seconds), and IGNORECASE took the Kelvin sign for `k`.
DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
DURATION_HINT = "write a duration with a unit, like 90s, 20m, 12h or 1h30m"
# Far beyond any limit a setting allows, and far below what a timedelta can hold.
MAX_DURATION = timedelta(days=3650)
SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)([kmgt])(?:i?b)?", re.IGNORECASE | re.ASCII)
SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
SIZE_HINT = "write a size with a unit, like 512m or 4g"


def parse_duration(value: object) -> timedelta:
    """Read `90s`, `20m`, `12h`, `1h30m` or `2d` (whole units, largest first) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(DURATION_HINT)
    text = value.strip().lower()
    match = DURATION_RE.fullmatch(text)
    if not text or match is None:
        raise ValueError(DURATION_HINT)
    too_long = f"must be at most {format_duration(MAX_DURATION)}"
    parts = [(p, size) for p, (_, size) in zip(match.groups(), DURATION_UNITS, strict=True) if p]
    # A count of over 9 digits is beyond MAX_DURATION in any unit; do not read it as a number.
    if any(len(part) > 9 for part, _ in parts):
        raise ValueError(too_long)
    seconds = sum(int(part) * size for part, size in parts)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(too_long)
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta the way `parse_duration` reads it (`1h30m`, `0s`)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in DURATION_UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_size(value: object) -> int:
    """Read `512m`, `4g`, `1.5g` or `4GiB` (binary units, as Docker does) in whole KiB."""
    if not isinstance(value, str):
        raise ValueError(SIZE_HINT)
    match = SIZE_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(SIZE_HINT)
    number, unit = match.groups()
    return round(float(number) * SIZE_UNITS[unit.lower()] / 1024) * 1024


def format_size(value: int) -> str:
    """Render a byte count in the largest unit that divides it exactly (`4g`, `1536m`)."""
    for unit in ("t", "g", "m", "k"):
        if value and value % SIZE_UNITS[unit] == 0:
            return f"{value // SIZE_UNITS[unit]}{unit}"
    return f"{value // 1024}k"
