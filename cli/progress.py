"""One live status line on a terminal; in a log (CI), a line per phase plus a periodic heartbeat.

A ticker thread keeps the line alive while the work itself is silent (pip downloading a large
wheel prints nothing for a minute), so long work never looks hung.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

from jobs.lib import result as result_line


def say(text: str) -> None:
    """One line of the kit's own output, on stderr so stdout stays for reports (status --json)."""
    print(f"kit: {text}", file=sys.stderr, flush=True)


class LiveLine:
    def __init__(self, label: str, stream=None, heartbeat: float = 30.0):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.heartbeat = heartbeat
        self._phase, self._detail = "starting", ""
        self._printed_phase = None
        self._last_print = 0.0
        self._width = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, phase: str, detail: str = "") -> None:
        """phase: what is under way (e.g. a build step); detail: its latest output line."""
        with self._lock:
            self._phase, self._detail = phase, detail
            self._render(force=phase != self._printed_phase)

    def _tick(self) -> None:
        while not self._stop.wait(1.0 if self.tty else self.heartbeat):
            with self._lock:
                self._render(force=not self.tty)

    def _render(self, force: bool) -> None:
        text = f"{self.label} [{self.elapsed():5.0f}s] {self._phase}" + (f" | {self._detail}" if self._detail else "")
        if self.tty:
            text = text[:160]
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            now = time.monotonic()
            if not force and now - self._last_print < self.heartbeat:
                return
            self._printed_phase, self._last_print = self._phase, now
            self.stream.write(text[:300] + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        self._stop.set()
        self._ticker.join()
        line = f"{self.label} [{self.elapsed():5.0f}s] {text}"
        with self._lock:
            self.stream.write(("\r" + line.ljust(self._width) if self.tty else line) + "\n")
            self.stream.flush()


# TensorFlow's C++ start-up and end-of-input lines on a CPU-only host: not errors, but they look
# like them ("E ... Unable to register cuFFT factory"). The job's log file keeps them.
TENSORFLOW_NOISE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+\] (Unable to register cu(FFT|DNN|BLAS) factory"
    r"|TF-TRT Warning: Could not find TensorRT|Local rendezvous is aborting with status: OUT_OF_RANGE"
    r"|The calling iterator did not fully read the dataset being cached"
    r"|oneDNN custom operations are on|This TensorFlow binary is optimized|could not open file to read NUMA)"
    r"|^\s+\[\[\{\{node IteratorGetNext\}\}\]\]$"
)  # the rendezvous line's own second line


class JobOutput:
    """A job's lines: all of them into its log file, on the terminal all but TensorFlow's noise."""

    def __init__(self, log_path: Path | None, show=print, label: str | None = None):
        """label: shown before each line on the terminal, where several jobs print at once."""
        self.path, self.show, self.lines, self._log = log_path, show, [], None
        self.prefix = f"[{label}] " if label else ""
        if log_path:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self.path, self._log = open_new(log_path)

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self._log:
            self._log.write(line + "\n")
            self._log.flush()
        if not line.startswith(result_line.PREFIX) and not TENSORFLOW_NOISE.match(line):
            self.show(self.prefix + line, flush=True)

    def where(self) -> str:
        return f"; full output: {self.path}" if self.path else ""

    def close(self) -> None:
        if self._log:
            self._log.close()


def open_new(path: Path):
    """(path, file) of a log no other job writes: jobs started in the same second (run side by side)
    get <name>-2.log, -3, ... instead of one file both write over."""
    candidate, number = path, 1
    while True:
        try:
            return candidate, open(candidate, "x", encoding="utf-8")
        except FileExistsError:
            number += 1
            candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")


def job_log(results_dir: str, job: str) -> Path:
    return Path(results_dir).resolve() / "logs" / f"{job}-{time.strftime('%Y%m%d-%H%M%S')}.log"
