"""test: the README's test command."""

from __future__ import annotations

import shlex
import sys
import time

from invoke import Exit, task

from cli.cluster import args_after_double_dash
from cli.engine import ensure_engine
from cli.images import build_all
from cli.settings import kit_settings


@task(help={"unit": "unit tests only: no Docker engine or images needed"})
def test(c, unit=False):
    """Run the tests: ruff (lint, format), mypy, unit tests, then the integration tests on a real containerised cluster.

    Makes sure a Docker engine answers and the images are built (cached), then runs pytest.
    Extra pytest arguments: test.pytest_args, or after `--` (./kit test -- -k hdfs).
    """
    phases = {}
    started = time.monotonic()
    lint = c.run(shlex.join([sys.executable, "-m", "ruff", "check", "--no-cache", "."]), warn=True, pty=False)
    if lint.exited:
        raise Exit(
            "kit: lint failed: fix what ruff names above ('.venv/bin/ruff check --fix .' sorts imports)", code=lint.exited
        )
    types = c.run(shlex.join([sys.executable, "-m", "mypy"]), warn=True, pty=False)
    if types.exited:
        raise Exit("kit: type check failed: fix what mypy names above ([tool.mypy] in pyproject.toml)", code=types.exited)
    layout = c.run(shlex.join([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."]), warn=True, pty=False)
    if layout.exited:
        raise Exit("kit: format check failed: '.venv/bin/ruff format .' rewrites the files named above", code=layout.exited)
    phases["lint"] = time.monotonic() - started
    pytest_args = shlex.split(kit_settings(c).test.pytest_args or "") + args_after_double_dash()
    if unit:
        pytest_args = ["-m", "not integration", *pytest_args]
    else:
        started = time.monotonic()
        ensure_engine()
        build_all(c)
        phases["engine and images"] = time.monotonic() - started
    started = time.monotonic()
    env = {"TESTCONTAINERS_RYUK_DISABLED": "true"}
    result = c.run(shlex.join([sys.executable, "-m", "pytest", *pytest_args]), env=env, warn=True, pty=False)
    phases["pytest"] = time.monotonic() - started
    print("kit: phase times: " + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in phases.items()), file=sys.stderr)
    if result.exited:
        raise Exit("kit: tests failed", code=result.exited)
