"""Fixtures of the unit and integration tests alike."""

from __future__ import annotations

import signal

import pytest


@pytest.fixture
def ctrl_c():
    """Python's own Ctrl-C handler while the test runs: a test suite started in the background by a
    script inherits SIGINT ignored, and then a simulated Ctrl-C (_thread.interrupt_main) does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
