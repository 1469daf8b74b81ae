"""SIGTERM stops a task as Ctrl-C does.

`kill PID`, a CI runner's timeout or a closing session send SIGTERM, whose default ends Python at
once: the job's client container would carry on alone. As a KeyboardInterrupt it takes the
Ctrl-C path instead: the job is stopped, its clean-up runs, and the task says what was kept.
"""

from __future__ import annotations

import signal
import threading


def interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, interrupt)
