"""The two MultiWorkerMirroredStrategy workers of test_collectives.py take about 20 s of the
machine: started as soon as the tests are collected, with their tests moved after the other unit
tests, they run beside those rather than before their own, which keeps the unit tests under a
minute."""

from __future__ import annotations


def collectives_module(session):
    return next((item.module for item in session.items if item.module.__name__.endswith("test_collectives")), None)


def pytest_collection_modifyitems(session, config, items) -> None:
    collectives = [item for item in items if item.module.__name__.endswith("test_collectives")]
    if collectives:
        rest = [item for item in items if item not in collectives]
        last_unit = max((i for i, item in enumerate(rest) if "tests/unit/" in item.nodeid), default=-1)
        items[:] = rest[: last_unit + 1] + collectives + rest[last_unit + 1 :]


def pytest_collection_finish(session) -> None:
    module = collectives_module(session)
    if module is not None and not session.config.option.collectonly:
        module.start_workers()


def pytest_sessionfinish(session) -> None:
    module = collectives_module(session)
    if module is not None:
        module.stop_workers()  # interrupted before their tests: never left running
