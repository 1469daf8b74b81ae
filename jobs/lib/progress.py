"""A live status line on the driver from Spark's status tracker: tasks done of total."""

from __future__ import annotations

import contextlib
import sys
import threading
import time


@contextlib.contextmanager
def spark_progress(sc, label: str, every: float = 5.0):
    """Prints '<label>: stage S, done/total tasks' while the body runs, then the elapsed time."""
    stop = threading.Event()
    started = time.monotonic()

    def report():
        last = None
        while not stop.wait(every):
            tracker = sc.statusTracker()
            parts = []
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info:
                    parts.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks")
            line = f"{label}: " + (", ".join(parts) or "working") + f" [{time.monotonic() - started:.0f}s]"
            if line != last:
                print(line, file=sys.stderr, flush=True)
                last = line

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        print(f"{label}: done in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
