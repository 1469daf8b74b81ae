"""Helpers of the integration tests: cluster shapes, client containers, job runs, result lines.

The fixtures that use them are in conftest.py; test modules import these from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import pytest
from invoke import Config, Context

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # its reaper image cannot be pulled here

from testcontainers.core.container import DockerContainer  # noqa: E402

from cli.settings import cluster_shape  # noqa: E402
from cluster.lifecycle import DRIVER, Cluster, JobTimeLimit  # noqa: E402
from cluster.topology import PROJECT_LABEL  # noqa: E402
from jobs.lib import result as result_line  # noqa: E402
from jobs.train_cnn import TrainArgs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def kit_context() -> Context:
    config = Config(project_location=str(ROOT))
    config.load_project()
    config.load_shell_env()
    return Context(config)


def unique_project(kind: str = "") -> str:
    """dlkit-test-[kind-]<pid>-<hex>: the pid tells a crashed run's leftovers from a live run's cluster."""
    return f"dlkit-test-{kind + '-' if kind else ''}{os.getpid()}-{uuid.uuid4().hex[:6]}"


def remove_leftover_test_clusters(client) -> None:
    """Clusters of earlier test runs whose pytest is gone (killed, crashed) are removed first."""
    projects = set()
    for listing in (
        client.containers.list(all=True, filters={"label": PROJECT_LABEL}),
        client.networks.list(filters={"label": PROJECT_LABEL}),
        client.volumes.list(filters={"label": PROJECT_LABEL}),
    ):
        for item in listing:
            labels = item.labels if hasattr(item, "labels") else (item.attrs.get("Labels") or {})
            projects.add(labels.get(PROJECT_LABEL, ""))
    for project in sorted(projects):
        match = re.fullmatch(r"dlkit-test-(?:[a-z]+-)?(\d+)-[0-9a-f]+", project)
        if match and not pid_alive(int(match[1])):
            print(f"removing the leftover test cluster {project}")
            Cluster(dataclasses.replace(shape_for_tests(), project=project), client).down(volumes=True, say=lambda line: None)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def shape_for_tests(**changes):
    shape = cluster_shape(kit_context(), project=unique_project())
    return dataclasses.replace(
        shape, namenode_ui_port=0, spark_master_ui_port=0, spark_worker_ui_port=0, spark_history_ui_port=0, **changes
    )


@contextlib.contextmanager
def running_cluster(client, say=print, **changes):
    cluster = Cluster(shape_for_tests(**changes), client)
    for image in (cluster.shape.hadoop_image, cluster.shape.spark_image):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run './kit images.build' (./kit test does)", pytrace=False)
    try:
        cluster.up(say=lambda line: say(f"[{cluster.shape.project}] {line}"))
        yield cluster
    finally:
        cluster.down(volumes=True, say=lambda line: None)


def namesystem_state(cluster) -> dict:
    """The namenode's FSNamesystemState JMX bean (live, dead and stale datanodes...): one HTTP request, no JVM."""
    query = "http://localhost:9870/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
    return cluster.fetch_json("namenode", query)["beans"][0]


def client_container(cluster: Cluster, command: list[str]) -> DockerContainer:
    """A testcontainers container with the kit's client settings, on the cluster's network."""
    spec = cluster.client_kwargs(command, ROOT)
    container = DockerContainer(spec["image"]).with_command(command).with_name(spec["name"])
    for key, value in spec["environment"].items():
        container.with_env(key, value)
    for host_path, mount in spec.get("volumes", {}).items():
        container.with_volume_mapping(host_path, mount["bind"], mount["mode"])
    return container.with_kwargs(
        **{key: spec[key] for key in ("hostname", "labels", "network", "nano_cpus", "mem_limit", "working_dir")}
    )


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


def run_job(cluster, job: str, args: list[str], source, collect=None, spark=True) -> tuple[int, str]:
    """A job in a client container: through spark-submit, or with spark=False (a check that never
    starts Spark) as a plain Python process, which spares the seconds of a JVM's start."""
    lines: list[str] = []
    try:
        code = cluster.run_client(
            ["spark-submit", DRIVER, job, *args] if spark else ["python", job, *args],
            ROOT,
            out=lines.append,
            mounts={str(source): SOURCE},
            collect=collect,
            timeout=JOB_TIMEOUT,
        )
    except JobTimeLimit as error:  # the test fails with the job's output, not only the limit
        lines.append(str(error))
        code = 124
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


def epochs_reported(cluster, run_id: str) -> int:
    """The newest whole checkpoint's epoch, from the folder's listing: the namenode alone answers it.

    Reading a file instead (progress.jsonl) is redirected to a datanode, and after a datanode is
    killed such reads hung for a minute while the run went on to its end."""
    try:
        listing = cluster.webhdfs_list(f"/runs/{run_id}.partial/checkpoints")
    except Exception:  # the namenode busy: not reported yet
        listing = []
    names = [entry["pathSuffix"] for entry in listing if entry["type"] == "DIRECTORY"]
    return max((int(name.removeprefix("epoch-")) for name in names if not name.endswith(".tmp")), default=0)


def poll_while_running(found: Callable[[], object], ended: Callable[[], str | None], waiting_for: Callable[[], str]):
    """found()'s first true answer, polled each second while ended() is None, for at most JOB_TIMEOUT.

    ended() is None while the run goes on, and what to show of it once it has ended; waiting_for()
    says what has not happened, for either failure."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while (finished := ended()) is None:
        if answer := found():
            return answer
        assert time.monotonic() < deadline, f"{waiting_for()} in {JOB_TIMEOUT} s"
        time.sleep(1)  # polling the namenode, bounded by the deadline above
    raise AssertionError(f"the run ended first ({waiting_for()}): {finished}")


def wait_for_epoch(cluster, run_id: str, epochs: int, ended: Callable[[], str | None]) -> int:
    """Until run_id has checkpointed at least `epochs` epochs and still runs; returns how many it had."""
    reported = 0

    def enough() -> int | None:
        nonlocal reported
        reported = epochs_reported(cluster, run_id)
        return reported if reported >= epochs else None

    return poll_while_running(enough, ended, lambda: f"{run_id} checkpointed {reported} of {epochs} epoch(s)")


def train(cluster, target, source, **fields) -> tuple[int, str]:
    """jobs/train_cnn.py run directly, with its arguments built as the kit builds them (fields override)."""
    args = TrainArgs(
        **{
            "data": target,
            "runs": cluster.shape.default_fs + "/runs",
            "cores_per_slot": 2,
            "batch_per_worker": 16,
            "recipe": "paper",
            "gradient_dtype": "float32",
            "attempts": 1,
            "recovery_wait": 20.0,
            **fields,
        }
    )
    return run_job(cluster, "/opt/dlkit/jobs/train_cnn.py", args.to_argv(), source)


@dataclasses.dataclass(frozen=True)
class Fsck:
    """`hdfs fsck PATH`'s verdict and block counts."""

    healthy: bool
    missing: int
    under_replicated: int
    corrupt: int
    report: str = dataclasses.field(repr=False)

    @property
    def fully_replicated(self) -> bool:
        return self.healthy and not (self.missing or self.under_replicated or self.corrupt)


def fsck(cluster, path: str) -> Fsck:
    report = cluster.hdfs(["fsck", path], seconds=120)

    def count(label: str) -> int:
        found = re.search(rf"{label}:\s*(\d+)", report)
        assert found, f"fsck printed no '{label}' count:\n{report[-3000:]}"
        return int(found[1])

    return Fsck(
        healthy="Status: HEALTHY" in report,
        missing=count("Missing blocks"),
        under_replicated=count("Under-replicated blocks"),
        corrupt=count("Corrupt blocks"),
        report=report,
    )


def wait_until_fully_replicated(cluster, paths: tuple[str, ...], seconds: float) -> None:
    """Until fsck finds every path HEALTHY with no missing, under-replicated or corrupt block, for at
    most `seconds`: the namenode re-replicates every 3 s."""
    deadline = time.monotonic() + seconds
    while True:
        verdicts = {path: fsck(cluster, path) for path in paths}
        if all(verdict.fully_replicated for verdict in verdicts.values()):
            return
        if time.monotonic() > deadline:
            short = "\n".join(verdict.report[-1500:] for verdict in verdicts.values() if not verdict.fully_replicated)
            raise AssertionError(f"not fully replicated {seconds:.0f} s on: {verdicts}\n{short}")
        time.sleep(2)  # bounded by the deadline above
