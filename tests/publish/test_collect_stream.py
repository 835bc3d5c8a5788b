"""Collect's archive reader against hostile archives: one regular file, capped, or nothing."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import pytest

from runner.collect import read_single, stat_refusal
from runner.patch_policy import PatchRefusedError

CAP = 1024


def archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info


def chunks(data: bytes, counter: list[int], size: int = 100) -> Iterator[bytes]:
    """The archive as the engine streams it, counting what was pulled."""
    for start in range(0, len(data), size):
        counter.append(size)
        yield data[start : start + size]


def test_the_one_regular_file_is_read() -> None:
    data = archive((entry("change.patch", size=5), b"hello"))
    assert read_single(chunks(data, []), "change.patch", CAP) == b"hello"


@pytest.mark.parametrize(
    "members",
    [
        [(entry("change.patch", tarfile.DIRTYPE), b""), (entry("change.patch/x", size=3), b"abc")],
        [(entry("change.patch", tarfile.SYMTYPE), b"")],
        [(entry("change.patch", tarfile.LNKTYPE), b"")],
        [(entry("change.patch", tarfile.CHRTYPE), b"")],
        [(entry("change.patch", tarfile.FIFOTYPE), b"")],
        [(entry("change.patch", size=3), b"abc"), (entry("other", size=3), b"def")],
        [(entry("other.patch", size=3), b"abc")],
    ],
)
def test_anything_but_one_regular_file_is_refused(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> None:
    with pytest.raises(PatchRefusedError, match="agent's output"):
        read_single(chunks(archive(*members), []), "change.patch", CAP)


def test_a_header_over_the_cap_is_refused_before_its_data_is_pulled() -> None:
    data = archive((entry("change.patch", size=100_000), b"x" * 100_000))
    pulled: list[int] = []
    with pytest.raises(PatchRefusedError, match="over the limit"):
        read_single(chunks(data, pulled), "change.patch", CAP)
    assert sum(pulled) < 10_000  # the PAX and tar headers, not the 100 kB behind them


def test_whatever_follows_the_file_is_never_pulled() -> None:
    data = archive((entry("change.patch", size=10), b"x" * 10)) + b"\0" * 40_000_000
    pulled: list[int] = []
    assert read_single(chunks(data, pulled, 64 * 1024), "change.patch", 10) == b"x" * 10
    assert sum(pulled) <= 2 * 64 * 1024


def test_the_engines_stat_refuses_directories_links_and_giants_at_once() -> None:
    assert stat_refusal({"mode": (1 << 31) | 0o755, "size": 4096}, CAP)
    assert stat_refusal({"mode": (1 << 27) | 0o777, "size": 10, "linkTarget": "/x"}, CAP)
    assert stat_refusal({"mode": 0o644, "size": 50 * 1024**3}, CAP)
    assert stat_refusal({"mode": 0o644, "size": 10}, CAP) is None
