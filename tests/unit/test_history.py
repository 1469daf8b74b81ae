import time

import numpy as np
import pytest

from jobs.lib.checkpointing import learning_rate_schedule
from jobs.lib.cnn import without_autograph
from jobs.lib.history import epoch_history, steady_rate


def test_each_epoch_reports_training_time_without_validation_and_its_rate():
    import tf_keras as keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model = without_autograph(model)  # as the kit's model: AutoGraph tracing alone would take 15 s here
    x, y = np.random.default_rng(0).random((64, 4)), np.arange(64) % 2
    seen = []
    history = epoch_history(steps_per_epoch=4, batch=16, on_row=seen.append)

    class Bookkeeping(keras.callbacks.Callback):  # as the chief's attempts.json write at an epoch's start
        def on_epoch_begin(self, epoch, logs=None):
            time.sleep(0.3)
            history.start_training_clock()

    schedule = learning_rate_schedule(1e-3, 2e-3, warmup_epochs=1, epochs=2)  # after the history, as in the kit
    model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), callbacks=[history, Bookkeeping(), schedule], verbose=0)
    assert [row["epoch"] for row in history.rows] == [1, 2] and seen == history.rows
    assert [row["learning_rate"] for row in history.rows] == pytest.approx([1e-3, 2e-3])  # each epoch's own rate
    for row in history.rows:
        assert 0 <= row["train_seconds"] <= row["seconds"]  # four tiny steps can round to 0.00 s
        assert (
            row["seconds"] - row["train_seconds"] >= 0.29
        )  # (rounded to 0.01 s) the bookkeeping counts in the epoch, not in training
        # the rate comes from the unrounded time; train_seconds is rounded to 0.01 s
        low, high = row["train_seconds"] - 0.005, row["train_seconds"] + 0.005
        assert 64 / high - 0.05 <= row["images_per_second"] <= 64 / max(low, 1e-9) + 0.05
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(row)


def test_the_steady_rate_leaves_out_the_first_epoch():
    assert steady_rate([{"images_per_second": 10.0}, {"images_per_second": 300.0}, {"images_per_second": 310.0}]) == 305.0
    assert steady_rate([{"images_per_second": 42.0}]) == 42.0 and steady_rate([]) is None


def test_short_epochs_validate_a_part_of_the_test_set_and_full_runs_all_of_it():
    from jobs.lib.history import validation_steps

    assert validation_steps(None, 10000, 16) is None and validation_steps(0, 10000, 16) is None
    assert validation_steps(2000, 10000, 32) == 62
    assert validation_steps(2000, 200, 16) is None  # a test set smaller than asked: all of it, no warnings
    assert validation_steps(5, 10000, 32) == 1


def test_a_training_summary_reports_the_run_from_its_rows():
    from jobs.lib.history import training_summary

    rows = [{"images_per_second": 10.0}, {"images_per_second": 300.0}, {"images_per_second": 310.0}]
    assert training_summary(rows, 1.25, 0.5, 12.345) == {
        "epochs_run": 3,
        "history": rows,
        "test_loss": 1.25,
        "test_accuracy": 0.5,
        "train_seconds": 12.3,
        "steady_images_per_second": 305.0,
    }
