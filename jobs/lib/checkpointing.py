"""The training callbacks that make a run resumable: checkpoints kept by the chief, early stopping
that carries its state across attempts, and the learning-rate schedule (warm-up, then cosine decay) of the
scaled and tuned recipes.

Built by make_callbacks inside each barrier task (tf-keras is imported there, not on the driver);
the checkpoint format and the restore side are in jobs/lib/resume.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time


def make_callbacks(keras, *, chief, storage, run_dir, scratch, state, best_weights, attempts, history, marks, config):
    """[early stopping, chief checkpoints] for one attempt; state/best_weights come from resume.restore."""
    from jobs.lib import resume

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)  # resets best, wait and best weights: put back the saved ones
            if state:
                resume.restore_early_stopping(self, state["early_stopping"], best_weights)

    stopping = ResumableEarlyStopping(monitor="val_loss", patience=config["patience"], restore_best_weights=True)

    class ChiefCheckpoints(keras.callbacks.Callback):
        """Every worker saves (collective ops need all of them); only the chief's copy is kept."""

        def on_train_begin(self, logs=None):
            marks.append(("train_begin", time.time()))

        def on_epoch_begin(self, epoch, logs=None):
            marks.append((f"epoch{epoch + 1}_begin", time.time()))
            if chief:
                attempts[-1]["last_epoch_begun"] = epoch + 1
                storage.replace_bytes(storage.join(run_dir, "attempts.json"), json.dumps(attempts).encode())
                history.start_training_clock()  # the write above is bookkeeping, not training

        def on_epoch_end(self, epoch, logs=None):
            marks.append((f"epoch{epoch + 1}_end", time.time()))
            folder = os.path.join(scratch, f"epoch-{epoch + 1:04d}")
            self.model.save_weights(os.path.join(folder, "weights"))
            if chief:
                with open(os.path.join(folder, "state.json"), "w") as handle:
                    json.dump(
                        {"epoch": epoch + 1, "history": history.rows, "early_stopping": resume.early_stopping_state(stopping)},
                        handle,
                    )
                if stopping.best_weights is not None:
                    with open(os.path.join(folder, "best.npz"), "wb") as handle:
                        handle.write(resume.weights_to_npz(stopping.best_weights))
                upload_folder(storage, folder, storage.join(run_dir, "checkpoints", f"epoch-{epoch + 1:04d}"))
                prune_checkpoints(storage, storage.join(run_dir, "checkpoints"), config["keep_checkpoints"])
                storage.replace_bytes(
                    storage.join(run_dir, "progress.jsonl"), "".join(json.dumps(r) + "\n" for r in history.rows).encode()
                )
            shutil.rmtree(folder, ignore_errors=True)
            marks.append((f"epoch{epoch + 1}_saved", time.time()))

    return [stopping, ChiefCheckpoints()]


def upload_folder(storage, local: str, target: str) -> None:
    """Checkpoint files into <target>.tmp, then renamed: a checkpoint folder is always whole."""
    staging = target + ".tmp"
    storage.delete(staging)
    for name in sorted(os.listdir(local)):
        with open(os.path.join(local, name), "rb") as handle:
            storage.write_bytes(storage.join(staging, name), handle.read())
    storage.rename(staging, target)


def prune_checkpoints(storage, folder: str, keep: int) -> None:
    done = [e.path for e in storage.listdir(folder) if e.is_dir and not e.path.endswith(".tmp")]
    for path in sorted(done)[:-keep]:
        storage.delete(path)


def scheduled_rate(epoch: int, start_rate: float, target_rate: float, warmup_epochs: int, epochs: int) -> float:
    """Epoch `epoch`'s (from 0) learning rate: a straight line from start_rate reaching target_rate at
    epoch `warmup_epochs`, then half a cosine from target_rate towards 0 over the rest of the run.

    A function of the epoch alone, so a run resumed at any epoch gets the rate a whole run had. The
    decay lets the last epochs settle: at a constant rate, validation accuracy swung by up to 8 pp
    from one epoch to the next, more than the accuracy gate's tolerance."""
    if epoch < warmup_epochs:
        return start_rate + (target_rate - start_rate) * epoch / warmup_epochs
    progress = min(1.0, (epoch - warmup_epochs) / max(1, epochs - warmup_epochs))
    return target_rate * 0.5 * (1 + math.cos(math.pi * progress))


def learning_rate_schedule(start_rate: float, target_rate: float, warmup_epochs: int, epochs: int):
    import tf_keras as keras

    return keras.callbacks.LearningRateScheduler(
        lambda epoch, rate: scheduled_rate(epoch, start_rate, target_rate, warmup_epochs, epochs)
    )
