"""The task log: streamed line by line, secret values redacted, size-capped."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path

MASK = "***"
# Lines of a multi-line secret shorter than this are too common to redact on their own.
MIN_SECRET_LINE = 4
MAX_LINE_CHARS = 16 * 1024
DEFAULT_CAP_BYTES = 4 * 1024 * 1024
TAIL_LINES = 200
TRUNCATED = "[gantry] log truncated at {cap} bytes; {dropped} more bytes not kept"


class Redactor:
    """Replaces every secret value (and each line of a multi-line one) by a mask."""

    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        for value in secrets:
            if not value:
                continue
            needles.add(value)
            if "\n" in value:
                needles.update(p for p in value.splitlines() if len(p) >= MIN_SECRET_LINE)
        self.needles = sorted(needles, key=len, reverse=True)
        self.longest = len(self.needles[0]) if self.needles else 0

    def __call__(self, text: str) -> str:
        """The text with every secret masked."""
        for needle in self.needles:
            text = text.replace(needle, MASK)
        return text

    def safe_cut(self, text: str, cut: int) -> int:
        """A cut point at or before `cut` that splits no secret occurrence in `text`."""
        moved = True
        while moved:
            moved = False
            for needle in self.needles:
                start = text.find(needle, max(0, cut - len(needle) + 1))
                if 0 <= start < cut < start + len(needle):
                    cut, moved = start, True
        return cut


class LineSplitter:
    """Turns a stream of text chunks into lines, splitting over-long ones where no secret is."""

    def __init__(self, redactor: Redactor, max_line: int = MAX_LINE_CHARS) -> None:
        self._redactor = redactor
        self._max = max(max_line, redactor.longest + 1)
        self._buffer = ""

    def feed(self, chunk: str) -> list[str]:
        """Complete lines of the text so far (without their newline)."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split("\n")
        while len(self._buffer) > self._max:
            cut = self._redactor.safe_cut(self._buffer, self._max - self._redactor.longest) or 1
            lines.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
        return lines

    def flush(self) -> list[str]:
        """The last, unterminated line, if any."""
        rest, self._buffer = self._buffer, ""
        return [rest] if rest else []


class TaskLog:
    """One task's log file; every line is redacted before it is kept anywhere."""

    def __init__(
        self, path: Path, secrets: Iterable[str] = (), cap_bytes: int = DEFAULT_CAP_BYTES
    ) -> None:
        self.path = path
        self.redactor = Redactor(secrets)
        self.cap_bytes = cap_bytes
        self.written = 0
        self.dropped = 0
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also redact these values from now on."""
        with self._lock:
            self.redactor = Redactor([*self.redactor.needles, *secrets])

    def line(self, phase: str, text: str) -> None:
        """Append one line of a phase's output."""
        clean = self.redactor(text)
        record = f"[{phase}] {clean}\n"
        size = len(record.encode("utf-8", "replace"))
        with self._lock:
            self._tail.append(clean)
            if self.written + size > self.cap_bytes:
                self.dropped += size
                return
            self.written += size
            self._file.write(record)
            self._file.flush()

    def tail(self, count: int = 20) -> list[str]:
        """The last redacted lines, kept even past the cap (for failure reports)."""
        with self._lock:
            return list(self._tail)[-count:]

    def text(self) -> str:
        """Everything written so far."""
        with self._lock:
            self._file.flush()
        return self.path.read_text(encoding="utf-8")

    def labelled(self, label: str) -> TaskLog:
        """A view of this log for one of several attempts: its lines go here marked
        `[label]`, and its tail holds only its own lines (its checks' failures)."""
        return LabelledLog(self, label)

    def close(self) -> None:
        """Note a truncation, then close the file."""
        with self._lock:
            if self.dropped:
                self._file.write(TRUNCATED.format(cap=self.cap_bytes, dropped=self.dropped) + "\n")
            self._file.close()


class LabelledLog(TaskLog):
    """One attempt's view of its task's log: the file, its cap and its redaction are the
    parent's; the tail is the attempt's own."""

    def __init__(self, parent: TaskLog, label: str) -> None:  # no file of its own
        self.parent, self.label = parent, label
        self.path, self.redactor = parent.path, parent.redactor
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.parent.add_secrets(secrets)
        self.redactor = self.parent.redactor

    def line(self, phase: str, text: str) -> None:
        self.parent.line(phase, f"[{self.label}] {text}")
        with self._lock:
            self._tail.append(self.parent.redactor(text))

    def text(self) -> str:
        return self.parent.text()

    def close(self) -> None:
        """Nothing to close: the parent owns the file."""
