"""Faults on the real cluster: lost executors, a restarted worker and a stopped driver during
training, a lost datanode during staging, a namenode restart. Each test puts the shared cluster
back to healthy before it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from cluster.lifecycle import DRIVER
from tests.integration.support import (
    JOB_TIMEOUT,
    ROOT,
    SHARDS,
    SOURCE,
    TEST_RECORDS,
    TRAIN_PER_BATCH,
    result_of,
    run_job,
)

KILL_EXECUTORS = (
    "import os, signal\n"  # every executor JVM of the worker, not this script itself
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        command = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
    "        executor = any(b'CoarseGrainedExecutorBackend' in part for part in command)\n"
    "        if command[0].endswith(b'/java') and executor:\n"
    "            os.kill(int(pid), signal.SIGKILL); print('killed', pid)\n"
    "    except OSError:\n"
    "        pass\n"
)


def hdfs_text(cluster, path: str) -> str | None:
    try:
        return cluster.hdfs(["dfs", "-cat", path])
    except Exception:
        return None


def epochs_reported(cluster, run_id: str) -> int:
    try:  # WebHDFS: a curl, not a JVM per poll
        progress = cluster.webhdfs_read(f"/runs/{run_id}.partial/progress.jsonl")
    except Exception:  # the namenode busy or the file mid-replace: not reported yet
        progress = None
    return len(progress.splitlines()) if progress else 0


def wait_for_epoch(cluster, process, run_id: str, epochs: int) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline and epochs_reported(cluster, run_id) < epochs:
        time.sleep(1)  # polling HDFS, bounded by the job's own deadline
    assert process.poll() is None, f"training ended before the fault could be injected: {process.communicate()[0][-3000:]}"


def test_a_run_survives_lost_executors_a_restarted_worker_and_its_driver_stopped_by_ctrl_c(
    cluster, staged, target, source, tmp_path
):
    # Three faults in one run of `invoke train`: executor JVMs killed (the application survives);
    # the worker container restarted (a node reboot: the master may end the whole application);
    # Ctrl-C (the driver gone, as with a killed client or a rebooted host), then `--resume`.
    env = {
        **os.environ,
        "INVOKE_DATA_HDFS_ROOT": "/data/cifar10-test",
        "INVOKE_DATA_DIR": str(tmp_path / "no-data"),
        "INVOKE_DATA_RESULTS_DIR": str(tmp_path / "results"),
        "INVOKE_TRAIN_ATTEMPTS": "4",
        "INVOKE_TRAIN_RECOVERY_WAIT": "240",
    }
    train = [sys.executable, "-m", "invoke", "train", "--project", cluster.shape.project]
    process = subprocess.Popen(
        [*train, "--slots", "2", "--epochs", "4", "--steps-per-epoch", "60", "--run-id", "it-resume"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_epoch(cluster, process, "it-resume", 1)
        killed_at = time.time()
        killed = cluster.container("spark-worker").exec_run(["python", "-c", KILL_EXECUTORS])
        assert b"killed" in killed.output, killed.output
        wait_for_epoch(cluster, process, "it-resume", 2)
        restarted_at = time.time()
        cluster.container("spark-worker").restart(timeout=10)
        wait_for_epoch(cluster, process, "it-resume", 3)
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:  # never leave a training job running behind a failed assertion
            process.kill()
            process.communicate()
        cluster.up(say=lambda line: None)  # the worker healthy again for the next tests
    stopped_in = time.monotonic() - interrupted_at
    assert process.returncode == 130, output[-5000:]
    assert "'./kit train --resume it-resume' continues it" in output, output[-3000:]
    assert [c.name for c in cluster.containers() if "-client-" in c.name] == []  # no driver left behind
    assert "it-resume.partial" in cluster.hdfs(["dfs", "-ls", "/runs"])
    status = subprocess.run(
        [sys.executable, "-m", "invoke", "status", "--json", "--project", cluster.shape.project],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "it-resume" in json.loads(status.stdout)["hdfs"]["leftovers"]["interrupted_runs"], status.stdout + status.stderr
    new_application = "starting a new application" in output

    done = subprocess.run(
        [*train, "--resume", "it-resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    metrics = json.loads(hdfs_text(cluster, "/runs/it-resume/metrics.json"))
    assert metrics["driver_resumes"] == 1 and metrics["steps_per_epoch"] == 60, metrics  # its own settings
    assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3, 4]
    # Spark may retry a barrier stage itself before the driver does: an attempt can repeat, never go back
    resumed = metrics["resumed_from_epochs"]
    assert {1, 2, 3} <= set(resumed) <= {1, 2, 3} and resumed == sorted(resumed), metrics
    assert set(metrics["epochs_redone"]) <= {2, 3, 4}, metrics  # at most the one interrupted epoch per fault
    attempts = metrics["attempts"]
    started = [a["started_at"] for a in attempts]
    print(
        f"fault: executors killed after epoch 1, resumed {min(t for t in started if t > killed_at) - killed_at:.1f}s "
        f"later; worker restarted after epoch 2, resumed {min(t for t in started if t > restarted_at) - restarted_at:.1f}s "
        f"later ({'in a new application' if new_application else 'in the same application'}); Ctrl-C after epoch 3 "
        f"stopped the driver in {stopped_in:.1f}s and --resume went on from epoch {resumed[-1]}; epochs redone "
        f"{metrics['epochs_redone']}, restarts {metrics['restarts']}"
    )
    code, output = run_job(
        cluster,
        "/opt/dlkit/tests/integration/jobs/evaluate_model.py",
        [cluster.shape.default_fs + "/runs/it-resume", target],
        source,
    )
    assert code == 0, output[-4000:]
    assert result_of(output)["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1.5 / TEST_RECORDS)


def test_staging_loses_nothing_when_a_datanode_dies_halfway(cluster, staged, source):
    target = cluster.shape.default_fs + "/data/cifar10-datanode-loss"
    datanode = cluster.container("datanode-2")
    killed = threading.Event()

    def kill_on_third_upload(line: str) -> None:
        lines.append(line)
        if "uploading data_batch_3.bin" in line and not killed.is_set():
            datanode.kill()
            killed.set()

    lines: list[str] = []
    started = time.monotonic()
    try:
        code = cluster.run_client(
            [
                "spark-submit",
                DRIVER,
                "/opt/dlkit/jobs/stage_cifar.py",
                "--source",
                SOURCE,
                "--target",
                target,
                "--shards",
                str(SHARDS),
            ],
            ROOT,
            out=kill_on_third_upload,
            mounts={str(source): SOURCE},
            timeout=JOB_TIMEOUT,
        )
        output = "\n".join(lines)
        assert killed.is_set(), "the staging never reached its third upload"
        assert code == 0, output[-5000:]
        # the driver's own HDFS writer (its event log) carries on with the live datanode too
        assert "Failed to replace a bad datanode" not in output, output[-5000:]
        result = result_of(output)
        assert result["train_records"] == 5 * TRAIN_PER_BATCH and result["test_records"] == TEST_RECORDS
        assert result["train_class_counts"] == staged["train_class_counts"]
        code, output = run_job(cluster, "/opt/dlkit/tests/integration/jobs/verify_staged.py", [target, SOURCE], source)
        assert code == 0, output[-4000:]
        assert result_of(output)["mismatches"] == []
        retries = [line for line in lines if line.startswith("storage:")]
        print(
            f"fault: datanode-2 killed during the third upload; staging done in {time.monotonic() - started:.1f}s "
            f"({result['staging_seconds']}s staging) with {len(retries)} storage retries; every record checked"
        )
    finally:
        cluster.up(say=lambda line: None)  # the datanode back, and the cluster healthy for the next tests


def test_a_namenode_restart_keeps_every_file_and_its_checksum(cluster, staged):
    listing = cluster.hdfs(["dfs", "-ls", "-R", "/data/cifar10-test"])
    files = [line.split()[-1] for line in listing.splitlines() if line.startswith("-")]

    def checksums() -> dict[str, str]:
        listing = cluster.hdfs(["dfs", "-checksum", *files])
        return {line.split()[0]: line.split()[-1] for line in listing.splitlines() if line.startswith("/")}

    def cluster_id() -> str:
        version = cluster.container("namenode").exec_run(["cat", "/data/namenode/current/VERSION"]).output.decode()
        return next(line for line in version.splitlines() if line.startswith("clusterID="))

    before, identity = checksums(), cluster_id()
    assert len(before) == 1 + 6 + 2 * SHARDS
    started = time.monotonic()
    cluster.restart("namenode", say=lambda line: None)
    print(f"fault: namenode restarted, healthy again in {time.monotonic() - started:.1f}s, {len(before)} checksums unchanged")
    assert cluster_id() == identity
    assert checksums() == before
    assert "Safe mode is OFF" in cluster.hdfs(["dfsadmin", "-safemode", "get"])
