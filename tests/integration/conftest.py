"""A real cluster for the integration tests, built by the same code as `./kit up`.

Its project name is unique per run, so it runs beside a user's cluster; teardown removes its
containers, network and volumes even when setup fails.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
from invoke import Config, Context

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # its reaper image cannot be pulled here

from testcontainers.core.container import DockerContainer  # noqa: E402

from cli.settings import cluster_shape  # noqa: E402
from cluster.lifecycle import DRIVER, PROJECT_LABEL, Cluster  # noqa: E402
from jobs import result as result_line  # noqa: E402
from jobs.cifar import FOLDER  # noqa: E402
from jobs.synthetic_cifar import write_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


def kit_context() -> Context:
    config = Config(project_location=str(ROOT))
    config.load_project()
    config.load_shell_env()
    return Context(config)


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:
        pytest.fail(f"No Docker engine answers ({error}). The integration tests need one: run them with "
                    "'./kit test' (it brings an engine up), or deselect them with -m 'not integration'.",
                    pytrace=False)
    remove_leftover_test_clusters(client)
    return client


def unique_project(kind: str = "") -> str:
    """dlkit-test-[kind-]<pid>-<hex>: the pid tells a crashed run's leftovers from a live run's cluster."""
    return f"dlkit-test-{kind + '-' if kind else ''}{os.getpid()}-{uuid.uuid4().hex[:6]}"


def remove_leftover_test_clusters(client) -> None:
    """Clusters of earlier test runs whose pytest is gone (killed, crashed) are removed first."""
    projects = set()
    for listing in (client.containers.list(all=True, filters={"label": PROJECT_LABEL}),
                    client.networks.list(filters={"label": PROJECT_LABEL}),
                    client.volumes.list(filters={"label": PROJECT_LABEL})):
        for item in listing:
            labels = item.labels if hasattr(item, "labels") else (item.attrs.get("Labels") or {})
            projects.add(labels.get(PROJECT_LABEL, ""))
    for project in sorted(projects):
        match = re.fullmatch(r"dlkit-test-(?:[a-z]+-)?(\d+)-[0-9a-f]+", project)
        if match and not pid_alive(int(match[1])):
            print(f"removing the leftover test cluster {project}")
            Cluster(dataclasses.replace(test_shape(), project=project), client).down(volumes=True,
                                                                                   say=lambda line: None)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def test_shape(**changes):
    shape = cluster_shape(kit_context(), project=unique_project())
    return dataclasses.replace(shape, namenode_ui_port=0, spark_master_ui_port=0,
                               spark_worker_ui_port=0, spark_history_ui_port=0, **changes)


@contextlib.contextmanager
def running_cluster(client, **changes):
    cluster = Cluster(test_shape(**changes), client)
    for image in (cluster.shape.hadoop_image, cluster.shape.spark_image):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run './kit images.build' (./kit test does)", pytrace=False)
    try:
        cluster.up(say=lambda line: print(f"[{cluster.shape.project}] {line}"))
        yield cluster
    finally:
        cluster.down(volumes=True, say=lambda line: None)


@pytest.fixture(scope="session")
def cluster(docker_client):
    with running_cluster(docker_client) as started:
        yield started


def client_container(cluster: Cluster, command: list[str]) -> DockerContainer:
    """A testcontainers container with the kit's client settings, on the cluster's network."""
    spec = cluster.client_kwargs(command, ROOT)
    container = DockerContainer(spec["image"]).with_command(command).with_name(spec["name"])
    for key, value in spec["environment"].items():
        container.with_env(key, value)
    for host_path, mount in spec.get("volumes", {}).items():
        container.with_volume_mapping(host_path, mount["bind"], mount["mode"])
    return container.with_kwargs(**{key: spec[key] for key in
                                    ("hostname", "labels", "network", "nano_cpus", "mem_limit", "working_dir")})


def run_in_client(cluster: Cluster, command: list[str], timeout: float = 300) -> str:
    """Run a command in a client container to completion; its output, or a failure with it."""
    with client_container(cluster, command) as container:
        wrapped = container.get_wrapped_container()
        code = wrapped.wait(timeout=timeout)["StatusCode"]
        output = wrapped.logs().decode(errors="replace")
    assert code == 0, f"{command} exited with {code}:\n{output[-4000:]}"
    return output


def result_of(output: str) -> dict:
    found = result_line.find(output.splitlines())
    assert found is not None, f"no RESULT line in:\n{output[-3000:]}"
    return found


SOURCE = "/opt/dlkit-data"
JOB_TIMEOUT = 900  # a stuck job fails its test with its output instead of stalling the whole run
TRAIN_PER_BATCH, TEST_RECORDS, SHARDS = 400, 500, 4


def run_job(cluster, job: str, args: list[str], source, collect=None) -> tuple[int, str]:
    lines = []
    code = cluster.run_client(["spark-submit", DRIVER, job, *args], ROOT, out=lines.append,
                              mounts={str(source): SOURCE}, collect=collect, timeout=JOB_TIMEOUT)
    return code, "\n".join(lines)


def readable(path):
    """pytest's temporary folders are private to root; the containers' user must read them."""
    for item in [path, *path.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)
    for parent in path.parents:
        if parent.name.startswith("pytest-"):
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    return path


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
    code, output = run_job(cluster, "/opt/dlkit/jobs/stage_cifar.py",
                           ["--source", SOURCE, "--target", target, "--shards", str(SHARDS)], source)
    assert code == 0, output[-4000:]
    return result_of(output)




@pytest.fixture(scope="session")
def bench_runs(cluster, staged, tmp_path_factory) -> dict:
    """One tiny `invoke bench` (1 and 2 slots of 2 cores, 2 epochs, plain baseline) on the staged
    test data: its report is the bench's test, its run folders the training tests' evidence."""
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "INVOKE_DATA_HDFS_ROOT": "/data/cifar10-test", "INVOKE_DATA_DIR": str(out / "no-data")}
    command = [sys.executable, "-m", "invoke", "bench", "--project", cluster.shape.project, "--slots", "1,2",
               "--epochs", "2", "--steps-per-epoch", "5", "--cores-per-slot", "2", "--baselines", "plain",
               "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    results = json.loads((out / "results.json").read_text())
    runs = {row["slots"]: row["run_dir"].split("://", 1)[-1].split("/", 1)[-1] for row in results["configurations"]}
    return {"results": results, "output": output, "out": out, "runs": {n: "/" + path for n, path in runs.items()}}
