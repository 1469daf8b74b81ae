"""Resuming a run from the chief's last complete checkpoint after a failed barrier stage.

A checkpoint folder `checkpoints/epoch-NNNN` holds the tf-keras weights checkpoint (model and
optimizer state), `state.json` (the epoch counter, the history so far, early stopping's best
value, wait and best epoch) and `best.npz` (early stopping's best weights). It is uploaded as
`.tmp` and renamed, so any folder without that suffix is whole.

Every attempt of the training function (Spark's own barrier-stage retry or the driver's) starts
by looking for the newest one; `attempts.json` in the run folder records where each attempt
started and the last epoch it began, so the epochs redone are known afterwards.
"""

from __future__ import annotations

import io
import json
import os
import time

CHECKPOINT_PREFIX = "epoch-"


def latest_checkpoint(storage, folder: str) -> tuple[int, str] | None:
    """(epoch, path) of the newest whole checkpoint folder, or None."""
    if not storage.exists(folder):
        return None
    done = []
    for entry in storage.listdir(folder):
        name = entry.path.rstrip("/").rsplit("/", 1)[-1]
        if entry.is_dir and name.startswith(CHECKPOINT_PREFIX) and not name.endswith(".tmp"):
            done.append((int(name[len(CHECKPOINT_PREFIX) :]), entry.path))
    return max(done) if done else None


def restore(model, storage, folder: str, local: str):
    """Loads the newest whole checkpoint into model: (epoch, state, best weights), or (0, None, None)."""
    latest = latest_checkpoint(storage, folder)
    if latest is None:
        return 0, None, None
    epoch, remote = latest
    download_folder(storage, remote, local)
    model.load_weights(os.path.join(local, "weights"))  # model and optimizer state (slots restored on creation)
    with open(os.path.join(local, "state.json")) as handle:
        state = json.load(handle)
    best = os.path.join(local, "best.npz")
    best_weights = None
    if os.path.exists(best):
        with open(best, "rb") as handle:
            best_weights = weights_from_npz(handle.read())
    return epoch, state, best_weights


def remove_unfinished(storage, folder: str) -> None:
    """Uploads an interrupted attempt left half-done (`.tmp`): the chief removes them on resuming."""
    if storage.exists(folder):
        for entry in storage.listdir(folder):
            if entry.path.rstrip("/").endswith(".tmp"):
                storage.delete(entry.path)


def download_folder(storage, remote: str, local: str) -> None:
    os.makedirs(local, exist_ok=True)
    for entry in storage.listdir(remote):
        if not entry.is_dir:
            name = entry.path.rstrip("/").rsplit("/", 1)[-1]
            with open(os.path.join(local, name), "wb") as handle:
                handle.write(storage.read_bytes(entry.path))


def early_stopping_state(callback) -> dict:
    return {"best": float(callback.best), "wait": int(callback.wait), "best_epoch": int(callback.best_epoch)}


def restore_early_stopping(callback, state: dict, best_weights) -> None:
    """Keras resets these in on_train_begin; restore them afterwards (see ResumableEarlyStopping)."""
    callback.best, callback.wait, callback.best_epoch = state["best"], state["wait"], state["best_epoch"]
    callback.best_weights = best_weights


def weights_to_npz(weights) -> bytes:
    buffer = io.BytesIO()
    import numpy as np

    np.savez(buffer, *weights)
    return buffer.getvalue()


def weights_from_npz(data: bytes):
    import numpy as np

    with np.load(io.BytesIO(data)) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def read_attempts(storage, run_dir: str) -> list[dict]:
    path = storage.join(run_dir, "attempts.json")
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else []


def begin_attempt(attempts: list[dict], resumed_from_epoch: int, driver: str = "") -> list[dict]:
    """The attempts with a new one appended; the earlier ones learn which of their epochs are redone."""
    earlier = [dict(a) for a in attempts]
    for attempt in earlier:
        if "epochs_redone" not in attempt:
            begun = attempt.get("last_epoch_begun", attempt["resumed_from_epoch"])
            attempt["epochs_redone"] = list(range(resumed_from_epoch + 1, begun + 1))
    return earlier + [
        {
            "attempt": len(earlier) + 1,
            "resumed_from_epoch": resumed_from_epoch,
            "started_at": round(time.time(), 1),
            "driver": driver,
        }
    ]


def summary(attempts: list[dict]) -> dict:
    drivers = list(dict.fromkeys(a.get("driver", "") for a in attempts))
    return {
        "restarts": max(len(attempts) - 1, 0),
        "driver_resumes": max(len(drivers) - 1, 0),  # `--resume` of a run whose driver died
        "resumed_from_epochs": [a["resumed_from_epoch"] for a in attempts[1:]],
        "epochs_redone": sorted({e for a in attempts for e in a.get("epochs_redone", [])}),
        "attempts": attempts,
    }
