"""The two MultiWorkerMirroredStrategy workers of test_collectives.py take about 20 s of the
machine: started as soon as the tests are collected, with their tests moved after the other unit
tests, they run beside those rather than before their own, which keeps the unit tests under a
minute."""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).parent
COLLECTIVES = UNIT / "test_collectives.py"


def pytest_collection_modifyitems(session, config, items) -> None:
    collectives = [item for item in items if item.path == COLLECTIVES]
    if collectives:
        rest = [item for item in items if item.path != COLLECTIVES]
        last_unit = max((i for i, item in enumerate(rest) if item.path.is_relative_to(UNIT)), default=-1)
        items[:] = rest[: last_unit + 1] + collectives + rest[last_unit + 1 :]


def pytest_collection_finish(session) -> None:
    option = session.config.option
    if option.collectonly or getattr(option, "setupplan", False) or getattr(option, "showfixtures", False):
        return  # nothing will run
    found = next((item for item in session.items if item.path == COLLECTIVES), None)
    if found is not None:
        found.module.start_workers()


def pytest_sessionfinish(session) -> None:
    from tests.unit import test_collectives

    test_collectives.stop_workers()  # interrupted before their tests: never left running
