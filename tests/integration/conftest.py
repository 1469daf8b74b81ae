"""A real cluster for the integration tests, built by the same code as `./kit up`.

Its project name is unique per run, so it runs beside a user's cluster; teardown removes its
containers, network and volumes even when setup fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


@pytest.fixture(scope="session")
def cluster(docker_client):
    with running_cluster(docker_client) as started:
        yield started


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
