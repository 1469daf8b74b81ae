"""A real cluster for the integration tests, built by the same code as `./kit up`.

Its project name is unique per run, so it runs beside a user's cluster; teardown removes its
containers, network and volumes even when setup fails. It starts as soon as the tests are
collected, in a thread: its half-minute of JVM start-ups runs beside the unit tests rather than
before the first integration test.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import docker
import docker.errors
import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # its reaper image cannot be pulled here

from jobs.lib.cifar import FOLDER  # noqa: E402
from jobs.synthetic_cifar import write_dataset  # noqa: E402
from tests.integration.support import (  # noqa: E402
    ROOT,
    SHARDS,
    SOURCE,
    TEST_RECORDS,
    TRAIN_PER_BATCH,
    readable,
    remove_leftover_test_clusters,
    result_of,
    run_job,
    running_cluster,
)


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:
        pytest.fail(
            f"No Docker engine answers ({error}). The integration tests need one: run them with "
            "'./kit test' (it brings an engine up), or deselect them with -m 'not integration'.",
            pytrace=False,
        )
    remove_leftover_test_clusters(client)
    return client


class ClusterStartedEarly:
    """The session cluster, brought up in a thread; its fixture waits for it and takes it down."""

    WAIT_SECONDS = 900  # far beyond a start's own bounded health waits (cluster.startup_timeout)

    def __init__(self, client) -> None:
        self.stack = contextlib.ExitStack()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.closed = False
        self.lines: list[str] = []  # printed by the fixture: a unit test's capture would swallow them
        self.cluster = None
        self.error: BaseException | None = None
        threading.Thread(target=self._start, args=(client,), name="session-cluster", daemon=True).start()

    def _start(self, client) -> None:
        try:
            remove_leftover_test_clusters(client)
            started = running_cluster(client, say=self.lines.append)
            self.cluster = started.__enter__()
            with self.lock:
                self.stack.push(started)
                late = self.closed
            if late:  # given up on while it started: it still goes down
                self.stack.close()
        except BaseException as error:  # pytest.fail's too: raised again in the fixture
            self.error = error
        finally:
            self.done.set()

    def result(self):
        waited = self.done.wait(self.WAIT_SECONDS)
        print("\n".join(self.lines))
        if not waited:
            pytest.fail(f"the session cluster was not up after {self.WAIT_SECONDS} s (its output is above)", pytrace=False)
        if self.error is not None:
            raise self.error
        return self.cluster

    def close(self) -> None:
        if not self.done.is_set():
            print("waiting for the session cluster to finish starting, to take it down", file=sys.stderr)
        self.done.wait(self.WAIT_SECONDS)
        with self.lock:  # a start that ends later takes itself down
            self.closed = True
            self.stack.close()


EARLY: dict[str, ClusterStartedEarly] = {}


def pytest_collection_finish(session) -> None:
    option = session.config.option
    if option.collectonly or getattr(option, "setupplan", False) or getattr(option, "showfixtures", False):
        return  # nothing will run
    if session.testsfailed:
        return  # collection errors: pytest stops before any test
    if not any("cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    try:
        client = docker.from_env()
        client.ping()
    except Exception:  # the docker_client fixture says what is wrong, test by test
        return
    EARLY["cluster"] = ClusterStartedEarly(client)


def pytest_sessionfinish(session) -> None:
    early = EARLY.pop("cluster", None)
    if early is not None:  # interrupted before any test used it
        early.close()


@pytest.fixture(scope="session")
def cluster(docker_client):
    early = EARLY.pop("cluster", None)
    if early is None:
        with running_cluster(docker_client) as started:
            yield started
        return
    try:
        yield early.result()
    finally:
        early.close()


@pytest.fixture(scope="session")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_dataset(root, TRAIN_PER_BATCH, TEST_RECORDS, seed=7)
    return readable(root / FOLDER)


@pytest.fixture(scope="session")
def target(cluster):
    return cluster.shape.default_fs + "/data/cifar10-test"


@pytest.fixture(scope="session")
def staged(cluster, source, target):
    code, output = run_job(
        cluster, "/opt/dlkit/jobs/stage_cifar.py", ["--source", SOURCE, "--target", target, "--shards", str(SHARDS)], source
    )
    assert code == 0, output[-4000:]
    return result_of(output)


@pytest.fixture(scope="session")
def bench_runs(cluster, staged, tmp_path_factory) -> dict:
    """One tiny `invoke bench` (1 and 2 slots of 2 cores, 2 epochs, plain baseline, 2 interleaved
    rounds, profiler traces) on the staged test data: its report is the bench's test, its run folders the training
    tests' evidence."""
    out = tmp_path_factory.mktemp("bench")
    env = {
        **os.environ,
        "INVOKE_DATA_HDFS_ROOT": "/data/cifar10-test",
        "INVOKE_DATA_DIR": str(out / "no-data"),
        "INVOKE_BENCH_PROBE_STEPS": "3",
    }
    command = [
        sys.executable,
        "-m",
        "invoke",
        "bench",
        "--project",
        cluster.shape.project,
        "--slots",
        "1,2",
        "--epochs",
        "2",
        "--steps-per-epoch",
        "5",
        "--cores-per-slot",
        "2",
        "--baselines",
        "plain",
        "--repeats",
        "2",
        "--profile",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    results = json.loads((out / "results.json").read_text())
    runs = {row["slots"]: row["run_dir"].split("://", 1)[-1].split("/", 1)[-1] for row in results["configurations"]}
    return {"results": results, "output": output, "out": out, "runs": {n: "/" + path for n, path in runs.items()}}
