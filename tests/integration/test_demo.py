"""`./kit demo` end to end with tiny data: on the embedded local-cluster, and on the containers."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from cli.settings import cluster_shape
from cluster.lifecycle import Cluster
from tests.integration.support import ROOT, kit_context, readable, unique_project

DEMO_TIMEOUT = 1500


def tiny_demo_env(tmp_path, **extra) -> dict:
    readable(tmp_path)
    return {
        **os.environ,
        "INVOKE_DATA_DIR": str(tmp_path / "data"),
        "INVOKE_DATA_RESULTS_DIR": str(tmp_path / "results"),
        "INVOKE_DATA_URL": "http://127.0.0.1:9/cifar-10-binary.tar.gz",  # unreachable: synthetic stand-in
        "INVOKE_DATA_SYNTHETIC_TRAIN_PER_BATCH": "200",
        "INVOKE_DATA_SYNTHETIC_TEST_RECORDS": "200",
        "INVOKE_DATA_SHARDS": "4",
        "INVOKE_DEMO_EPOCHS": "1",
        "INVOKE_DEMO_STEPS_PER_EPOCH": "4",
        "INVOKE_DEMO_EDA_FRACTION": "1.0",
        "INVOKE_BENCH_PROBE_STEPS": "3",  # the step probe's figures are the bench tests' (30 steps: 4 s a run)
        **extra,
    }


def run_demo(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "demo", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


def assert_demo_results(tmp_path, backend: str, output: str) -> None:
    out = tmp_path / "results" / "demo" / backend
    for name in ("results.json", "report.md", "curves.png", "phases.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == backend and results["synthetic"]["difficulty"] == "easy"  # how the stand-in was made
    assert [row["slots"] for row in results["configurations"]] == [1, 2]
    assert set(results["baselines"]) == ({"plain"} if backend == "embedded" else set())
    phases = json.loads((out / "phases.json").read_text())["phases"]
    assert {"data", "stage", "eda", "bench"} <= set(phases)
    assert (tmp_path / "results" / "eda" / "eda.json").is_file()
    assert "NOT comparable with published CIFAR-10 results" in output
    assert "| 2 slot(s) x 1 core(s) |" in output  # the report table is printed


def test_the_embedded_demo_runs_the_experiment_without_docker(tmp_path):
    output = run_demo(tiny_demo_env(tmp_path, INVOKE_DEMO_BASELINES="plain"), "--embedded")  # plain on the host too
    assert_demo_results(tmp_path, "embedded", output)
    assert (tmp_path / "results" / "embedded" / "storage" / "data" / "cifar10" / "manifest.json").is_file()


def test_the_containerised_demo_leaves_the_cluster_running_with_its_uis_then_up_and_down(tmp_path, docker_client, cluster):
    # A second cluster beside the session's, of another shape given by settings alone: names never
    # collide, and the demo's own cluster then proves an idempotent up and a down that leaves nothing.
    project = unique_project("demo")
    shape = {"INVOKE_CLUSTER_PROJECT": project, "INVOKE_CLUSTER_DATANODES": "1", "INVOKE_CLUSTER_REPLICATION": "1"}
    demo_cluster = Cluster(
        dataclasses.replace(cluster_shape(kit_context(), project=project), datanodes=1, replication=1), docker_client
    )
    try:
        output = run_demo(tiny_demo_env(tmp_path, **shape))
        assert_demo_results(tmp_path, "cluster", output)
        status = demo_cluster.status()
        assert all(s["state"] == "running" and s["health"] == "healthy" for s in status["services"]), status
        assert status["hdfs"]["live_datanodes"] == 1 and cluster.status()["hdfs"]["live_datanodes"] == 2
        assert "http://127.0.0.1:" in output and "'./kit down' stops it" in output

        # staging the same inputs again is settled from the manifest alone: no Spark application
        applications = len(demo_cluster.fetch_json("spark-master", "http://localhost:8080/json/")["completedapps"])
        done = subprocess.run(
            [sys.executable, "-m", "invoke", "stage"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=tiny_demo_env(tmp_path, **shape),
            timeout=300,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert "already staged (same inputs)" in done.stdout and "| train | 1000 | 4 |" in done.stdout
        assert len(demo_cluster.fetch_json("spark-master", "http://localhost:8080/json/")["completedapps"]) == applications

        ids = sorted(c.id for c in demo_cluster.containers())
        assert demo_cluster.up(say=lambda line: None)["hdfs"]["live_datanodes"] == 1
        assert sorted(c.id for c in demo_cluster.containers()) == ids  # up again: nothing recreated
        demo_cluster.down(volumes=True, say=lambda line: None)
        assert demo_cluster.leftovers() == {"containers": [], "networks": [], "volumes": []}
    finally:
        demo_cluster.down(volumes=True, say=lambda line: None)
