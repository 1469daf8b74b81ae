"""One worker of a two-process MultiWorkerMirroredStrategy on localhost (test_collectives.py).

Trains the reference CNN for two short epochs with validation, as Keras does it and with the
kit's metric syncs, then prints a JSON line: per way, the collective ops in the compiled train
and test steps, and the logs this worker saw.
"""

import json
import os
import sys

import jobs  # noqa: F401  (sets the Keras environment before TensorFlow loads)

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
index, ports = int(sys.argv[1]), sys.argv[2].split(",")
os.environ["TF_CONFIG"] = json.dumps(
    {"cluster": {"worker": [f"localhost:{port}" for port in ports]}, "task": {"type": "worker", "index": index}}
)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow call
import tf_keras as keras  # noqa: E402

from jobs.lib.cnn import build_model  # noqa: E402
from jobs.lib.epoch_metrics import sync_metrics_once_per_epoch  # noqa: E402
from jobs.lib.gradient_reduction import sum_gradients_in  # noqa: E402
from jobs.lib.step_probe import collective_ops, probe_step  # noqa: E402


def collective_dtypes(function) -> list[str]:
    """The dtypes the collective reductions of a traced step carry."""
    found = set()
    for concrete in function._list_all_concrete_functions():
        graph = concrete.graph.as_graph_def()
        for node in list(graph.node) + [node for f in graph.library.function for node in f.node_def]:
            if node.op.startswith("CollectiveReduce"):
                found.add(tf.dtypes.as_dtype(node.attr["T"].type).name)
    return sorted(found)


def train(mode: str) -> dict:
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model()
    callbacks = [sync_metrics_once_per_epoch(model)] if mode in ("synced", "bfloat16") else []
    if mode == "bfloat16":
        sum_gradients_in(model.optimizer, "bfloat16")
    rng = np.random.default_rng(index)  # each worker its own data, as FILE sharding gives it
    images, labels = rng.random((32, 32, 32, 3), np.float32), rng.integers(0, 10, 32)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    validation = data.take(16).batch(8).with_options(options)
    history = model.fit(
        data.repeat().batch(8).with_options(options),
        epochs=2,
        steps_per_epoch=3,
        validation_data=validation,
        callbacks=callbacks,
        verbose=0,
    )
    test = model.evaluate(validation, verbose=0)
    probe = probe_step(model, data.repeat().batch(8).with_options(options), steps=2) if mode == "synced" else None
    return {
        "probe": probe,
        "train_step": collective_ops(model.train_function),
        "train_step_dtypes": collective_dtypes(model.train_function),
        "test_step": collective_ops(model.test_function),
        "history": history.history,
        "test": test,
    }


print(json.dumps({mode: train(mode) for mode in ("keras", "synced", "bfloat16")}))
