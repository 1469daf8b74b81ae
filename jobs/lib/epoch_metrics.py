"""Metrics summed across workers once per epoch, not at every step.

Under MultiWorkerMirroredStrategy, Keras reads each metric's result at every step through a
merge_call that all-reduces its variables, then all-reduces the step's logs again: six
collectives per training step beside the one that matters, the gradients'. Each is a round
trip between the workers while their cores wait. Here a step reports its worker's own running
values, and the values a user sees (the epoch's training logs, validation and test results)
are summed across the workers once, when they are read: the same numbers, fewer round trips.
"""

from __future__ import annotations


def sync_metrics_once_per_epoch(model):
    """Installs the local step results and the synced evaluate on `model`; returns the callback
    that puts the workers' summed training metrics into each epoch's logs (list it first)."""
    import tensorflow as tf
    import tf_keras as keras

    def local_results() -> dict:
        # every compiled metric is a mean (total / count); read in the replica context these
        # are this worker's variables, with no collective
        return {metric.name: tf.math.divide_no_nan(metric.total, metric.count) for metric in model.metrics}

    def global_results() -> dict:
        # outside the step, reading a metric sums its variables over the workers: every worker
        # calls this at the same point (after an epoch, after an evaluation)
        return {metric.name: float(metric.result()) for metric in model.metrics}

    state = {"training": None}
    evaluate = model.evaluate

    def evaluate_with_global_results(*args, return_dict=False, **kwargs):
        if model.metrics and state["training"] is None:
            state["training"] = global_results()  # fit validates here: keep the epoch's training values first
        evaluate(*args, return_dict=True, **kwargs)
        results = global_results()
        return results if return_dict else [results[name] for name in model.metrics_names]

    class GlobalEpochLogs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            state["training"] = None

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs.update(state["training"] or global_results())
            state["training"] = None

    model.get_metrics_result = local_results
    model.distribute_reduction_method = "first"  # the step's logs: this worker's, no all-reduce
    model.evaluate = evaluate_with_global_results
    return GlobalEpochLogs()
