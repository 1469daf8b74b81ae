"""Per-epoch history for the training loops: training-only time, images per second, and the logs.

Keras's on_epoch_end comes after validation; timing stops at on_test_begin, so images/s
measures training alone, comparable between the distributed runs and the plain baseline.
"""

from __future__ import annotations

import time
from typing import Callable


def epoch_history(steps_per_epoch: int, batch: int, on_row: Callable[[dict], None] | None = None):
    """A callback whose .rows holds one dict per finished epoch; on_row sees each as it lands."""
    import tf_keras as keras

    class EpochHistory(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = self.training_started = time.monotonic()
            self.trained = None

        def start_training_clock(self) -> None:
            """Bookkeeping at an epoch's start (the chief's attempts.json) is not training: called
            after it, the epoch's training time starts here, as its checkpoint after it is not timed."""
            self.training_started = time.monotonic()

        def on_test_begin(self, logs=None):  # validation starts: the epoch's training part is over
            if self.trained is None:
                self.trained = time.monotonic() - self.training_started

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.monotonic() - self.started
            trained = self.trained or time.monotonic() - self.training_started
            self.rows.append(
                {
                    "epoch": epoch + 1,
                    "seconds": round(seconds, 2),
                    "train_seconds": round(trained, 2),
                    "images_per_second": round(steps_per_epoch * batch / trained, 1),
                    # the epoch's own rate, whatever schedule set it (a scheduler's "lr" log would come too late here)
                    "learning_rate": float(keras.backend.get_value(self.model.optimizer.learning_rate)),
                    **{key: float(value) for key, value in (logs or {}).items()},
                }
            )
            if on_row:
                on_row(self.rows[-1])

    return EpochHistory()


def steady_rate(rows: list[dict]) -> float | None:
    """Images per second after the first epoch, which carries graph building and warm-up."""
    rows = rows[1:] or rows
    return round(sum(r["images_per_second"] for r in rows) / len(rows), 1) if rows else None


def training_summary(rows: list[dict], test_loss, test_accuracy, train_seconds: float) -> dict:
    """What every training result reports of its run, the kit's and the plain baseline's alike."""
    return {
        "epochs_run": len(rows),
        "history": rows,
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "train_seconds": round(train_seconds, 1),
        "steady_images_per_second": steady_rate(rows),
    }


def validation_steps(records: int | None, test_records: int, global_batch: int) -> int | None:
    """Batches of the test set validated after each epoch: all of it (None), or about `records`.

    Short epochs (the demo's) would spend as long validating 10,000 images as training."""
    return None if not records or records >= test_records else max(1, records // global_batch)
