from pathlib import Path

import numpy as np
import pytest

from jobs.lib import resume
from jobs.lib.checkpointing import scheduled_rate
from jobs.lib.storage import LocalStorage


def test_the_newest_whole_checkpoint_wins_and_unfinished_uploads_are_ignored(tmp_path):
    storage = LocalStorage(str(tmp_path))
    for name in ("epoch-0001", "epoch-0002", "epoch-0003.tmp"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "state.json").write_text("{}")
    epoch, path = resume.latest_checkpoint(storage, str(tmp_path / "checkpoints"))
    assert epoch == 2 and path.endswith("epoch-0002")
    assert resume.latest_checkpoint(storage, str(tmp_path / "missing")) is None


def test_a_resumed_attempt_marks_the_interrupted_epochs_as_redone():
    first = resume.begin_attempt([], 0, driver="d1")
    first[-1]["last_epoch_begun"] = 2  # failed during epoch 2, after checkpoint 1
    second = resume.begin_attempt(first, 1, driver="d1")
    assert second[0]["epochs_redone"] == [2]
    assert resume.summary(second) == {
        "restarts": 1,
        "driver_resumes": 0,
        "resumed_from_epochs": [1],
        "epochs_redone": [2],
        "attempts": second,
    }
    assert resume.summary(resume.begin_attempt([], 0))["restarts"] == 0
    # the driver died and `--resume` started a new one: its attempts carry on the same list
    third = resume.begin_attempt(second, 1, driver="d2")
    assert resume.summary(third)["driver_resumes"] == 1 and resume.summary(third)["restarts"] == 2


def test_best_weights_survive_the_round_trip_in_order():
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]
    back = resume.weights_from_npz(resume.weights_to_npz(weights))
    assert len(back) == 2 and all(np.array_equal(a, b) for a, b in zip(weights, back))


def test_storage_retries_a_failing_operation_but_not_a_missing_file(monkeypatch):
    import pytest

    from jobs.lib import storage

    monkeypatch.setattr(storage.time, "sleep", lambda seconds: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("connection reset by datanode")
        return b"ok"

    assert storage.with_retries(flaky, "read x") == b"ok" and len(calls) == 3

    def missing():
        calls.append(1)
        raise FileNotFoundError("/data/x")

    calls.clear()
    with pytest.raises(FileNotFoundError):
        storage.with_retries(missing, "read x")
    assert len(calls) == 1


def test_restore_brings_back_weights_optimizer_state_and_the_epoch(tmp_path):
    import json

    from jobs.lib.cnn import build_model

    images = np.random.default_rng(0).random((8, 32, 32, 3), np.float32)
    labels = np.arange(8) % 10
    trained = build_model()
    trained.fit(images, labels, epochs=1, batch_size=4, verbose=0)  # 2 optimizer steps
    folder = tmp_path / "checkpoints" / "epoch-0003"
    trained.save_weights(str(folder / "weights"))
    (folder / "state.json").write_text(json.dumps({"epoch": 3, "history": [], "early_stopping": {}}))
    (folder / "best.npz").write_bytes(resume.weights_to_npz(trained.get_weights()))

    fresh = build_model()
    epoch, state, best = resume.restore(
        fresh, LocalStorage(str(tmp_path)), str(tmp_path / "checkpoints"), str(tmp_path / "restored")
    )
    fresh.fit(images[:4], labels[:4], epochs=1, batch_size=4, verbose=0)  # creates the optimizer slots
    assert epoch == 3 and state["epoch"] == 3 and len(best) == len(trained.get_weights())
    assert int(fresh.optimizer.iterations.numpy()) == 3  # 2 restored + the step above
    assert all(np.array_equal(a, b) for a, b in zip(best, trained.get_weights()))


def test_a_failed_jobs_reason_is_the_lost_executor_or_the_tasks_python_exception():
    from jobs.train_cnn import failure_reason

    python_failure = Exception(
        "An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
    )
    assert failure_reason(python_failure).startswith("json.decoder.JSONDecodeError: Expecting value")
    lost = Exception(
        "Job aborted due to stage failure: ...\nExecutorLostFailure (executor 1 exited caused by one of "
        "the running tasks) Reason: Command exited with code 137\n"
    )
    assert failure_reason(lost).startswith("ExecutorLostFailure (executor 1 exited")


def test_a_state_file_is_replaced_whole_and_leaves_no_partial_behind(tmp_path, monkeypatch):
    from jobs.lib.storage import LocalStorage

    storage = LocalStorage(str(tmp_path))
    path = str(tmp_path / "run" / "attempts.json")
    storage.write_bytes(path, b"[1]")
    storage.replace_bytes(path, b"[1, 2]")
    assert storage.read_bytes(path) == b"[1, 2]" and [p.name for p in (tmp_path / "run").iterdir()] == ["attempts.json"]

    def killed_midway(partial, data):  # the writer dies before its rename
        Path(partial).write_bytes(data[:3])
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "write_bytes", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        storage.replace_bytes(path, b"[1, 2, 3]")
    assert storage.read_bytes(path) == b"[1, 2]"  # the next attempt still reads a whole file


def test_the_warm_up_reaches_the_scaled_learning_rate_and_a_resumed_run_gets_it_too():
    # 2 workers, a 3-epoch bench: from the 1-worker rate to twice it; it once stopped a third short of it
    rates = [scheduled_rate(epoch, 1e-3, 2e-3, 2, 3) for epoch in range(3)]
    assert rates == pytest.approx([1e-3, 1.5e-3, 2e-3])  # the last epoch at the scaled rate
    assert scheduled_rate(0, 1e-3, 2e-3, 0, 1) == 2e-3  # a 1-epoch run: no warm-up


def test_after_the_warm_up_the_rate_decays_to_the_end_of_the_run_alike_for_one_and_two_slots():
    two = [scheduled_rate(epoch, 1e-3, 2e-3, 3, 10) for epoch in range(10)]
    one = [scheduled_rate(epoch, 1e-3, 1e-3, 3, 10) for epoch in range(10)]
    assert two[:4] == pytest.approx([1e-3, 4e-3 / 3, 5e-3 / 3, 2e-3])
    assert all(later < earlier for earlier, later in zip(two[3:], two[4:]))  # decays every epoch
    assert 0 < two[-1] < 0.05 * 2e-3  # the last epoch trains at a small rate, not at 0
    assert one[:4] == pytest.approx([1e-3] * 4)  # 1 slot: flat, then the same decay
    assert [b / a for a, b in zip(one[3:], two[3:])] == pytest.approx([2.0] * 7)
