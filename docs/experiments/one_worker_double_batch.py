"""The accuracy gate's control: what a 2-slot x 16 run computes, without distribution.

One worker at batch 32 (2 x 16) with the 2-slot scaled schedule (1e-3 -> 2e-3 over 3 epochs,
then cosine to epoch 10), on the staged hard stand-in, full epochs, validation on every test
record, early stopping as in the job. If it ends as far under 1 slot x 16 as 2 slots do, the
gap comes from the global batch (half the updates per epoch), not from the all-reduce.
docs/measurements.md (Accuracy gate runs) gives its results. Run it beside a running cluster:

    docker run --rm --network dlkit-net --cpuset-cpus 1 --user spark -w /opt/dlkit \\
      -v "$PWD":/opt/dlkit:ro -e PYTHONPATH=/opt/dlkit -e TF_USE_LEGACY_KERAS=1 \\
      -e HADOOP_USER_NAME=spark -e SEED=44 dlkit-spark:3.4.4-tf2.16.2 \\
      python docs/experiments/one_worker_double_batch.py
"""

import json
import os
import time

from jobs.lib import placement

placement.pin_process([int(os.environ.get("CPU", "1"))])

import tensorflow as tf  # noqa: E402  (after pinning: TensorFlow sizes its pools on import)
import tf_keras as keras  # noqa: E402

from jobs.lib.checkpointing import learning_rate_schedule  # noqa: E402
from jobs.lib.cnn import build_model  # noqa: E402
from jobs.lib.epoch_metrics import sync_metrics_once_per_epoch  # noqa: E402
from jobs.lib.input_pipeline import make_dataset  # noqa: E402
from jobs.lib.storage import open_storage  # noqa: E402

DATA = "hdfs://namenode:8020/data/cifar10"
EPOCHS, WARMUP_EPOCHS, BASE_RATE = 10, 3, 1e-3


class ShowEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        rate = float(keras.backend.get_value(self.model.optimizer.learning_rate))
        print(
            f"epoch {epoch + 1} lr {rate:.2g} acc {logs['accuracy']:.4f} val_acc {logs['val_accuracy']:.4f} "
            f"val_loss {logs['val_loss']:.4f} {time.time() - self.started:.0f}s",
            flush=True,
        )


def main() -> None:
    batch, workers, seed = (int(os.environ.get(name, default)) for name, default in (("BATCH", 32), ("SCALE", 2), ("SEED", 42)))
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(placement.INTEROP_THREADS)
    keras.utils.set_random_seed(seed)
    storage = open_storage(DATA)
    manifest = json.loads(storage.read_bytes(storage.join(DATA, "manifest.json")))
    files = {split: [shard["file"] for shard in manifest["splits"][split]["shards"]] for split in ("train", "test")}
    train = make_dataset(DATA, files["train"], batch, training=True, seed=seed)
    test = make_dataset(DATA, files["test"], batch, training=False)
    rate = BASE_RATE * workers
    model = build_model(rate)
    model.fit(
        train,
        epochs=EPOCHS,
        steps_per_epoch=manifest["splits"]["train"]["records"] // batch,
        validation_data=test,
        verbose=0,
        callbacks=[
            sync_metrics_once_per_epoch(model),
            learning_rate_schedule(BASE_RATE, rate, WARMUP_EPOCHS, EPOCHS),
            ShowEpoch(),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
        ],
    )
    loss, accuracy = model.evaluate(test, verbose=0)
    print(f"RESULT batch {batch} scale {workers} seed {seed}: test accuracy {accuracy:.4f} loss {loss:.4f}", flush=True)


if __name__ == "__main__":
    main()
