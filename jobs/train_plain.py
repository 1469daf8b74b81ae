"""Baseline: the same model and input pipeline in one plain tf-keras process, no Spark.

The kit's 1-slot run is compared with this on the same cores, so the framework's overhead
becomes a ratio rather than a guess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from jobs.lib.contract import JobArgs, flag
from jobs.lib.result import run_main


@dataclasses.dataclass(frozen=True)
class PlainArgs(JobArgs):
    data: str = flag("storage URL of the staged dataset (manifest.json)")
    epochs: int = flag("most epochs", low=1)
    batch: int = flag("batch size", low=1)
    threads: int = flag("TensorFlow intra-op threads", low=1)
    validation_records: int | None = flag(
        "test records validated after each epoch (default: all; the final test uses all)", default=None, low=1
    )
    steps_per_epoch: int | None = flag("default: one pass over the training set", default=None, low=1)
    patience: int = flag("early stopping's patience in epochs", default=5, low=1)
    seed: int = flag(default=42)
    first_cpu: int = flag("pinned to CPUs first-cpu .. first-cpu+threads-1 (the kit pins its slots alike)", default=0, low=0)
    pin: bool = flag("let the threads float instead of pinning them", default=True)
    probe_steps: int = flag("after training, time this many steps phase by phase (0: no probe)", default=0, low=0)
    profile: str | None = flag("a folder for a TensorFlow profiler trace of probe-steps steps after the probe", default=None)


def parse_args(argv) -> PlainArgs:
    return PlainArgs.parse(argv, __doc__)


def run(args) -> dict:
    from jobs.lib import placement

    cpus = None
    if args.pin:
        available = sorted(os.sched_getaffinity(0))
        cpus = available[args.first_cpu : args.first_cpu + args.threads]
        if len(cpus) < args.threads:
            raise ValueError(f"--first-cpu {args.first_cpu} --threads {args.threads}: only CPUs {available} here")
        placement.pin_process(cpus)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)  # before any op
    tf.config.threading.set_inter_op_parallelism_threads(placement.INTEROP_THREADS)
    import tf_keras as keras

    from jobs.lib.cnn import build_model
    from jobs.lib.epoch_metrics import sync_metrics_once_per_epoch
    from jobs.lib.history import epoch_history, training_summary, validation_steps
    from jobs.lib.input_pipeline import make_dataset
    from jobs.lib.step_probe import probe_step, trace_steps
    from jobs.lib.storage import open_storage

    keras.utils.set_random_seed(args.seed)
    storage = open_storage(args.data)
    manifest = json.loads(storage.read_bytes(storage.join(args.data, "manifest.json")))
    files = {split: [s["file"] for s in manifest["splits"][split]["shards"]] for split in ("train", "test")}
    steps = args.steps_per_epoch or manifest["splits"]["train"]["records"] // args.batch
    # as the kit's training: short epochs read (and cache) one epoch's records, validate a part
    train = make_dataset(
        args.data,
        files["train"],
        args.batch,
        training=True,
        seed=args.seed,
        records=steps * args.batch if args.steps_per_epoch else None,
    )
    test = make_dataset(args.data, files["test"], args.batch, training=False)
    model = build_model()

    def show(row):
        print(
            f"plain: epoch {row['epoch']}/{args.epochs} acc {row['accuracy']:.4f} "
            f"val_acc {row['val_accuracy']:.4f} {row['images_per_second']:.0f} img/s",
            flush=True,
        )

    history = epoch_history(steps, args.batch, on_row=show)
    started = time.monotonic()
    validation_batches = validation_steps(args.validation_records, manifest["splits"]["test"]["records"], args.batch)
    validation = (
        test
        if validation_batches is None
        else make_dataset(args.data, files["test"], args.batch, training=False, records=validation_batches * args.batch)
    )
    model.fit(
        train,
        epochs=args.epochs,
        steps_per_epoch=steps,
        validation_data=validation,
        validation_steps=validation_batches,
        verbose=0,
        # the kit's step, so the comparison is of the framework only (one worker: nothing to sum)
        callbacks=[
            sync_metrics_once_per_epoch(model),
            history,
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best_weights=True),
        ],
    )
    train_seconds = time.monotonic() - started
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    step_phases = probe_step(model, train, args.probe_steps) if args.probe_steps else None
    if args.profile and args.probe_steps:
        trace_steps(model, train, args.probe_steps, args.profile)
    return {
        "threads": args.threads,
        "cpus": cpus,
        "peak_rss_mb": placement.peak_rss_mb(),
        **training_summary(history.rows, test_loss, test_accuracy, train_seconds),
        "step_phases": step_phases,
    }


def main(argv=None) -> dict:
    return run_main("plain", run, parse_args(argv))


if __name__ == "__main__":
    main()
