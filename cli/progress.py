"""One live status line on a terminal; in a log (CI), a line per phase plus a periodic heartbeat."""
from __future__ import annotations

import sys
import time


class LiveLine:
    def __init__(self, label: str, stream=None, heartbeat: float = 30.0):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.heartbeat = heartbeat
        self._phase = None
        self._last_print = 0.0
        self._width = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, phase: str, detail: str = "") -> None:
        """phase: what is under way (e.g. a build step); detail: its latest output line."""
        text = f"{self.label} [{self.elapsed():5.0f}s] {phase}" + (f" | {detail}" if detail else "")
        if self.tty:
            text = text[: 160]
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            now = time.monotonic()
            if phase == self._phase and now - self._last_print < self.heartbeat:
                return
            self._phase, self._last_print = phase, now
            self.stream.write(text[:300] + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        line = f"{self.label} [{self.elapsed():5.0f}s] {text}"
        self.stream.write(("\r" + line.ljust(self._width) if self.tty else line) + "\n")
        self.stream.flush()
