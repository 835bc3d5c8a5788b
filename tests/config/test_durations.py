"""Durations and sizes as maintainers write them, and back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.durations import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("20m", 1200),
        ("12h", 43200),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1d2h3m4s", 93784),
        (" 5M ", 300),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "bad",
    [
        *("", "20", "20 minutes", "30m1h", "1.5h", "-5m", "m", 20, True, None),
        *("\u0663\u0660s", "\uff13\uff10m", "1\u0968h", "\U0001d7d1d"),  # other scripts' digits
    ],
)
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="with a unit"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 1024**2),
        ("4g", 4 * 1024**3),
        ("4GiB", 4 * 1024**3),
        ("1.5g", 1536 * 1024**2),
        ("64k", 65536),
        ("1t", 1024**4),
        ("2Gb", 2 * 1024**3),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "bad",
    [
        *("4096", "4 gigs", "g", "4x", 4096, None, ["4g"]),
        *("\u0664g", "\uff14g", "1.\u0665g", "4\u212a"),  # other digits, the Kelvin sign
    ],
)
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="with a unit"):
        parse_size(bad)


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@given(st.integers(min_value=0, max_value=2**32))
def test_size_round_trips_in_whole_kib(kib: int) -> None:
    assert parse_size(format_size(kib * 1024)) == kib * 1024


@pytest.mark.parametrize("huge", ["3651d", "99999999999999999999h", "9" * 5000 + "s"])
def test_parse_duration_refuses_what_no_setting_could_mean(huge: str) -> None:
    with pytest.raises(ValueError, match="at most 3650d"):
        parse_duration(huge)
