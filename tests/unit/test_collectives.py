"""The collectives of a training step under MultiWorkerMirroredStrategy, on two local processes."""

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import pytest

WORKER = Path(__file__).with_name("mwms_worker.py")
ROOT = Path(__file__).resolve().parents[2]
WORKER_SECONDS = 240


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


STARTED: list[tuple[subprocess.Popen, IO[str], IO[str]]] = []  # (worker, its stdout, its stderr)


def start_workers() -> list[tuple[subprocess.Popen, IO[str], IO[str]]]:
    """The two workers, started once: tests/unit/conftest.py starts them as soon as the tests are
    collected, so their 20 s of start-up and training run beside the other unit tests."""
    if not STARTED:
        ports = ",".join(map(str, free_ports(2)))
        for index in range(2):
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # never a full pipe
            worker = subprocess.Popen(
                [sys.executable, str(WORKER), str(index), ports],
                cwd=ROOT,
                stdout=out,
                stderr=err,
                text=True,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            )
            STARTED.append((worker, out, err))
    return STARTED


def stop_workers() -> None:
    for worker, out, err in STARTED:
        worker.kill()
        worker.wait()
        out.close()
        err.close()
    STARTED.clear()


@pytest.fixture(scope="module")
def runs() -> dict:
    """{"keras": [worker 0, worker 1], "synced": [...]}: both ways, in the same two processes (synced also probed)."""
    started = start_workers()
    deadline = time.monotonic() + WORKER_SECONDS
    try:
        while any(worker.poll() is None for worker, _, _ in started):
            failed = [err for worker, _, err in started if worker.poll() not in (None, 0)]
            if failed:  # its peer would wait for it until the deadline
                failed[0].seek(0)
                raise AssertionError(f"a MultiWorkerMirroredStrategy worker failed: {failed[0].read()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the MultiWorkerMirroredStrategy workers did not finish within {WORKER_SECONDS}s")
            time.sleep(0.2)  # bounded by the deadline above
        outputs = []
        for worker, out, err in started:
            out.seek(0)
            err.seek(0)
            assert worker.returncode == 0, err.read()[-2000:]
            outputs.append(json.loads(out.read().strip().splitlines()[-1]))
    finally:
        stop_workers()
    return {mode: [output[mode] for output in outputs] for mode in ("keras", "synced", "bfloat16")}


def test_a_training_step_runs_one_collective_the_gradients_all_reduce(runs):
    assert [w["train_step"] for w in runs["keras"]] == [7, 7]  # what Keras alone does: metric syncs every step
    assert [w["train_step"] for w in runs["synced"]] == [1, 1]
    assert [w["test_step"] for w in runs["synced"]] == [1, 1]  # the iterator's end-of-data check


def test_every_worker_reports_the_same_global_figures_as_keras_per_step_syncs(runs):
    keras_logs, synced = runs["keras"][0], runs["synced"]
    assert synced[0]["history"] == synced[1]["history"] and synced[0]["test"] == synced[1]["test"]
    for key, values in keras_logs["history"].items():
        assert synced[0]["history"][key] == pytest.approx(values, rel=1e-5), key
    assert synced[0]["test"] == pytest.approx(keras_logs["test"], rel=1e-5)


def test_the_step_probe_times_each_phase_on_both_workers_and_counts_the_steps_collectives(runs):
    from jobs.lib.step_probe import PHASES

    for probe in (w["probe"] for w in runs["synced"]):
        assert probe["workers"] == 2 and probe["collectives_per_step"] == 1 and probe["other_collectives"] == 0
        assert probe["step"] > 0 and all(probe[phase] >= 0 for phase in PHASES if phase != "rest")
        assert probe["rest"] == pytest.approx(probe["step"] - sum(probe[p] for p in PHASES if p != "rest"), abs=1e-4)


def test_gradients_summed_in_bfloat16_are_one_bfloat16_all_reduce_and_train_alike(runs):
    assert [w["train_step"] for w in runs["bfloat16"]] == [1, 1]
    assert [w["train_step_dtypes"] for w in runs["bfloat16"]] == [["bfloat16"], ["bfloat16"]]
    assert runs["synced"][0]["train_step_dtypes"] == ["float32"]
    float32, bfloat16 = runs["synced"][0]["history"], runs["bfloat16"][0]["history"]
    assert bfloat16["loss"] == pytest.approx(float32["loss"], rel=0.02)  # only the sum is rounded
