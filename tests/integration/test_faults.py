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

from cluster.lifecycle import DRIVER, ClusterError, exec_bounded
from tests.integration.support import (
    JOB_TIMEOUT,
    ROOT,
    SHARDS,
    SOURCE,
    TEST_RECORDS,
    TRAIN_PER_BATCH,
    epochs_reported,
    fsck,
    namesystem_state,
    poll_while_running,
    result_of,
    run_job,
    wait_for_epoch,
    wait_until_fully_replicated,
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
        return cluster.webhdfs_read(path)  # no JVM to start, unlike `hdfs dfs -cat`
    except Exception:
        return None


def attempts_of(cluster, run_id: str) -> list[dict]:
    try:
        found = cluster.webhdfs_read(f"/runs/{run_id}.partial/attempts.json")
    except Exception:  # mid-replace: not there for an instant
        found = None
    return json.loads(found) if found else []


def wait_for_training(cluster, process, run_id: str, earlier_attempts: int) -> None:
    """Until a new attempt of the run has begun an epoch."""

    def begun() -> bool:
        attempts = attempts_of(cluster, run_id)
        return len(attempts) > earlier_attempts and bool(attempts[-1].get("last_epoch_begun"))

    poll_while_running(begun, lambda: ended(process), lambda: f"no new attempt of {run_id} began training")


def ended(process: subprocess.Popen):
    """The waits' view of a `train` process: None while it runs, else its last output."""
    return None if process.poll() is None else process.communicate()[0][-3000:]


def kit(cluster, env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`invoke TASK ARGS` on the test cluster, as a user runs it, to its end."""
    command = [sys.executable, "-m", "invoke", *args, "--project", cluster.shape.project]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def with_ctrl_c() -> None:
    # A process started in the background by a non-interactive shell (`cmd &` in a script, as a
    # CI runner may start pytest) ignores SIGINT, and so would `invoke`, which inherits that:
    # this test's Ctrl-C would then never land (the run went on to its end in such runs).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_training(cluster, env: dict, *args: str) -> subprocess.Popen:
    train = [sys.executable, "-m", "invoke", "train", "--project", cluster.shape.project, *args]
    return subprocess.Popen(
        train, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=with_ctrl_c
    )


def stop(cluster, process: subprocess.Popen) -> None:
    """Never leave a training job running behind a failed assertion: its invoke, nor its driver."""
    if process.poll() is None:
        process.kill()
        process.communicate(timeout=60)
    for driver in cluster.running_clients(mentioning="it-resume"):
        cluster.client.containers.get(driver).remove(force=True)


def wait_until_declared_dead(cluster) -> float:
    """Seconds until the namenode declares the killed datanode dead."""
    started = time.monotonic()
    while (state := namesystem_state_or_why(cluster)).get("NumDeadDataNodes") != 1:
        assert time.monotonic() < started + 120, f"the namenode never declared the killed datanode dead: {state}"
        time.sleep(0.5)  # bounded by the deadline above; one HTTP request, no JVM
    return time.monotonic() - started


def namesystem_state_or_why(cluster) -> dict:
    """The namenode's state; an answer slower than fetch_json's 5 s reads as {"unanswered": why}."""
    try:
        return namesystem_state(cluster)
    except ClusterError as error:
        return {"unanswered": str(error)}


def test_a_run_survives_lost_executors_a_restarted_worker_a_lost_datanode_and_its_driver_stopped_or_killed(
    cluster, staged, target, source, tmp_path
):
    # One run of `invoke train` as a user runs it, five faults: executor JVMs killed (the
    # application survives); the worker container restarted (a node reboot: the master may end the
    # application); a datanode killed (its epochs carry on with the other replica); Ctrl-C, then
    # `--resume`; the resumed driver's `invoke` and then the driver itself killed outright, then
    # `--resume` again. Each fault lands as soon as the epoch it waits for is seen, with most of
    # the 10 epochs (8 s each when nothing fails) still to come: a run that completes before a
    # fault lands proves nothing. (`train` heals the cluster before it starts, so the datanode is
    # back for the resumed run.)
    env = {
        **os.environ,
        "INVOKE_DATA_HDFS_ROOT": "/data/cifar10-test",
        "INVOKE_DATA_DIR": str(tmp_path / "no-data"),
        "INVOKE_DATA_RESULTS_DIR": str(tmp_path / "results"),
        "INVOKE_TRAIN_ATTEMPTS": "4",
        "INVOKE_TRAIN_RECOVERY_WAIT": "240",
    }
    datanode = cluster.container("datanode-2")
    process = start_training(cluster, env, "--slots", "2", "--epochs", "10", "--steps-per-epoch", "60", "--run-id", "it-resume")
    try:
        wait_for_epoch(cluster, "it-resume", 1, lambda: ended(process))
        killed_at = time.time()
        code, killed = exec_bounded(
            cluster.container("spark-worker"), ["python", "-c", KILL_EXECUTORS], 30, "killing executors"
        )
        assert b"killed" in killed, killed
        wait_for_epoch(cluster, "it-resume", 2, lambda: ended(process))
        restarted_at = time.time()
        cluster.container("spark-worker").restart(timeout=10)
        wait_for_epoch(cluster, "it-resume", 3, lambda: ended(process))
        datanode_lost_at = time.monotonic()
        datanode.kill()
        at_interrupt = wait_for_epoch(cluster, "it-resume", 4, lambda: ended(process))
        epoch_without_datanode = time.monotonic() - datanode_lost_at
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=120)[0]
        stopped_in = time.monotonic() - interrupted_at
        drivers_left = cluster.running_clients()
        runs = " ".join(entry["pathSuffix"] for entry in cluster.webhdfs_list("/runs"))
        assert process.returncode == 130, f"{runs}\n{output[-5000:]}"
        assert "it-resume.partial" in runs, f"{runs}\n{output[-5000:]}"
        declared_dead_in = wait_until_declared_dead(cluster)
        counted = {path: fsck(cluster, path) for path in ("/data/cifar10-test", "/runs/it-resume.partial")}
    finally:
        stop(cluster, process)
        cluster.up(say=lambda line: None)  # the worker and the datanode healthy again for what follows
    # what was written while datanode-2 was down has its second replica again within the minute
    # `status` promises: a copy first sent to the stale datanode is retried in seconds, not 5-10 min
    wait_until_fully_replicated(cluster, ("/data/cifar10-test", "/runs/it-resume.partial", "/spark-events"), 60)
    assert "'./kit train --resume it-resume' continues it" in output, output[-3000:]
    _, said, after_ctrl_c = output.rpartition("kit: interrupted: stopping")
    assert said and "Traceback" not in after_ctrl_c, after_ctrl_c[-3000:]  # one line says it, no Python stack
    assert drivers_left == []  # no driver left behind
    assert all(c.healthy and not c.missing for c in counted.values()), counted
    assert any(c.under_replicated for c in counted.values()), counted
    status = kit(cluster, env, "status", "--json")
    assert "it-resume" in json.loads(status.stdout)["hdfs"]["leftovers"]["interrupted_runs"], status.stdout + status.stderr
    new_application = "starting a new application" in output

    # the resumed run's `invoke` killed outright: its driver (the client container) carries on alone
    earlier_attempts = len(attempts_of(cluster, "it-resume"))
    process = start_training(cluster, env, "--resume", "it-resume")
    try:
        wait_for_training(cluster, process, "it-resume", earlier_attempts)
        process.kill()
        process.communicate(timeout=60)
        [driver] = cluster.running_clients()
        refused = kit(cluster, env, "train", "--resume", "it-resume")
        # then the driver itself killed outright (SIGKILL: no clean-up), mid-run
        killed_after = epochs_reported(cluster, "it-resume")
        driver_killed_at = time.time()
        cluster.client.containers.get(driver).remove(force=True)
    finally:
        stop(cluster, process)
    assert refused.returncode == 1 and f"still being trained by {driver}" in refused.stderr, refused.stderr[-2000:]
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

    done = kit(cluster, env, "train", "--resume", "it-resume", timeout=JOB_TIMEOUT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    metrics = json.loads(hdfs_text(cluster, "/runs/it-resume/metrics.json"))
    assert metrics["driver_resumes"] == 2 and metrics["steps_per_epoch"] == 60, metrics  # its own settings
    assert [row["epoch"] for row in metrics["history"]] == list(range(1, 11))
    # Spark may retry a barrier stage itself before the driver does: an attempt can repeat, never go back
    resumed = metrics["resumed_from_epochs"]
    assert {1, 2} <= set(resumed) and len(resumed) >= 4 and resumed == sorted(resumed) and max(resumed) <= 9, metrics
    # after Ctrl-C, from the checkpoint of the epoch it came in (or the next, finished as the signal landed)
    assert any(at_interrupt <= epoch <= at_interrupt + 1 for epoch in resumed), (at_interrupt, metrics)
    redone = metrics["epochs_redone"]
    assert set(redone) <= set(range(2, 11)) and len(redone) <= len(resumed), metrics  # at most one per restart
    evidence = json.loads(hdfs_text(cluster, "/runs/it-resume/sharding.json"))
    read = set().union(*({n for n, k in e["records_read"].items() if n.startswith("train/") and k} for e in evidence))
    assert read == {f"train/part-{k:05d}.tfrecord" for k in range(SHARDS)}  # the last attempt read every shard
    started = [a["started_at"] for a in metrics["attempts"]]

    def back_after(at: float) -> str:
        return f"{min(t for t in started if t > at) - at:.1f}s"

    print(
        f"fault: executors killed after epoch 1, training back {back_after(killed_at)} later; worker restarted after "
        f"epoch 2, back {back_after(restarted_at)} later ({'a new' if new_application else 'the same'} application); "
        f"datanode-2 killed after epoch 3: epoch {at_interrupt} seen {epoch_without_datanode:.1f}s after the kill; "
        f"Ctrl-C then stopped the driver in {stopped_in:.1f}s; the datanode declared dead {declared_dead_in:.0f}s "
        f"after that, with one datanode: {counted}; the resumed run's invoke killed (its driver refused a second "
        f"--resume), the driver killed outright after {killed_after} epochs, --resume back "
        f"{back_after(driver_killed_at)} later; resumed from epochs {resumed}, epochs redone {redone}, "
        f"restarts {metrics['restarts']}, driver resumes {metrics['driver_resumes']}; the last attempt read all "
        f"{SHARDS} shards"
    )
    code, output = run_job(
        cluster,
        "/opt/dlkit/tests/integration/jobs/evaluate_model.py",
        [cluster.shape.default_fs + "/runs/it-resume", target],
        source,
        spark=False,
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
        code, output = run_job(
            cluster, "/opt/dlkit/tests/integration/jobs/verify_staged.py", [target, SOURCE], source, spark=False
        )
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
        version = exec_bounded(cluster.container("namenode"), ["cat", "/data/namenode/current/VERSION"], 30, "VERSION")[
            1
        ].decode()
        return next(line for line in version.splitlines() if line.startswith("clusterID="))

    before, identity = checksums(), cluster_id()
    assert len(before) == 1 + 6 + 2 * SHARDS
    started = time.monotonic()
    cluster.restart("namenode", say=lambda line: None)
    print(f"fault: namenode restarted, healthy again in {time.monotonic() - started:.1f}s, {len(before)} checksums unchanged")
    assert cluster_id() == identity
    assert checksums() == before
    assert "Safe mode is OFF" in cluster.hdfs(["dfsadmin", "-safemode", "get"])
