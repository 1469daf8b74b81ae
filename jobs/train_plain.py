"""Baseline: the same model and input pipeline in one plain tf-keras process, no Spark.

The kit's 1-slot run is compared with this on the same cores, so the framework's overhead
becomes a ratio rather than a guess.
"""
from __future__ import annotations

import argparse
import json
import time

from jobs.result import run_main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def run(args) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)  # before any op
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tf_keras as keras

    from jobs.cnn import build_model
    from jobs.input_pipeline import make_dataset
    from jobs.storage import open_storage

    keras.utils.set_random_seed(args.seed)
    storage = open_storage(args.data)
    manifest = json.loads(storage.read_bytes(storage.join(args.data, "manifest.json")))
    files = {split: [s["file"] for s in manifest["splits"][split]["shards"]] for split in ("train", "test")}
    steps = args.steps_per_epoch or manifest["splits"]["train"]["records"] // args.batch
    train = make_dataset(args.data, files["train"], args.batch, training=True, seed=args.seed)
    test = make_dataset(args.data, files["test"], args.batch, training=False)
    model = build_model()
    history = []

    class Timing(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started, self.trained = time.monotonic(), None

        def on_test_begin(self, logs=None):
            self.trained = self.trained or time.monotonic() - self.started

        def on_epoch_end(self, epoch, logs=None):
            trained = self.trained or time.monotonic() - self.started
            history.append({"epoch": epoch + 1, "train_seconds": round(trained, 2),
                            "images_per_second": round(steps * args.batch / trained, 1),
                            **{k: float(v) for k, v in (logs or {}).items()}})
            print(f"plain: epoch {epoch + 1}/{args.epochs} acc {history[-1]['accuracy']:.4f} "
                  f"val_acc {history[-1]['val_accuracy']:.4f} {history[-1]['images_per_second']:.0f} img/s", flush=True)

    started = time.monotonic()
    model.fit(train, epochs=args.epochs, steps_per_epoch=steps, validation_data=test, verbose=0,
              callbacks=[Timing(), keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                                                 restore_best_weights=True)])
    train_seconds = time.monotonic() - started
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    rows = history[1:] or history
    return {"threads": args.threads, "epochs_run": len(history), "history": history,
            "test_loss": float(test_loss), "test_accuracy": float(test_accuracy),
            "train_seconds": round(train_seconds, 1),
            "steady_images_per_second": round(sum(r["images_per_second"] for r in rows) / len(rows), 1)}


def main(argv=None) -> dict:
    return run_main("plain", run, parse_args(argv))


if __name__ == "__main__":
    main()
