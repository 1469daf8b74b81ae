"""Where the time of a training step goes, measured after training, outside the timed window.

Each phase runs alone for the same number of steps on every worker (collectives need all of
them), timed with the workers lined up before it:
- input: the next distributed batch, nothing else (decoding shares the slot's core with compute);
- compute: forward and backward on one batch, gradients kept local;
- all_reduce: the gradients' sum across workers, as Keras sends it (one packed float32 all-reduce);
- other_collectives: the collective ops in the compiled step beyond the gradients' one, at the
  measured cost of a scalar all-reduce each;
- step: the compiled train step as fit runs it (input, compute, all-reduce, optimizer, metrics);
- rest: step minus the phases above (Python dispatch, the optimizer, waiting for the other worker).
The model trains on during the probe: run it after the final model is saved.
"""

from __future__ import annotations

import time

PHASES = ("input", "compute", "all_reduce", "other_collectives", "rest")


def collective_ops(function) -> int:
    """The most collective ops in one traced step of a tf.function (its graph and the functions it calls)."""
    counts = [0]
    for concrete in function._list_all_concrete_functions():
        graph = concrete.graph.as_graph_def()
        nodes = list(graph.node) + [node for f in graph.library.function for node in f.node_def]
        counts.append(sum(1 for node in nodes if node.op.startswith("Collective")))
    return max(counts)


def seconds_per_call(call, steps: int, line_up) -> float:
    call()  # traced and warm
    line_up()
    started = time.perf_counter()
    for _ in range(steps):
        call()
    return (time.perf_counter() - started) / steps


def probe_step(model, dataset, steps: int, gradient_reductions: int = 1, gradient_dtype: str = "float32") -> dict:
    """Mean seconds per training step by phase, on the strategy the model was built under.

    gradient_reductions: collectives of the step that carry gradients (1: Keras packs them all);
    gradient_dtype: the dtype they are summed in (jobs/lib/gradient_reduction.py)."""
    import tensorflow as tf

    strategy = model.distribute_strategy
    with strategy.scope():  # as fit runs the step: its metrics are per-replica variables
        return probe_in_scope(tf, strategy, model, dataset, steps, gradient_reductions, tf.as_dtype(gradient_dtype))


def probe_in_scope(tf, strategy, model, dataset, steps: int, gradient_reductions: int, dtype) -> dict:
    one = tf.constant(1.0)

    @tf.function(autograph=False)  # plain tracing: AutoGraph would rewrite every layer (seconds per function)
    def scalar_sum():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, one))

    def line_up():
        scalar_sum()  # returns when every worker has reached it

    batches = iter(strategy.experimental_distribute_dataset(dataset))
    batch = next(batches)

    @tf.function(autograph=False)  # plain tracing: AutoGraph would rewrite every layer (seconds per function)
    def forward_backward(batch):
        def local(images, labels):
            with tf.GradientTape() as tape:
                loss = model.compiled_loss(labels, model(images, training=True))
            return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, model.trainable_variables)])

        return strategy.run(local, args=batch)

    @tf.function(autograph=False)  # plain tracing: AutoGraph would rewrite every layer (seconds per function)
    def gradient_sum():
        def local():
            zeros = [tf.zeros(v.shape, dtype) for v in model.trainable_variables]
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, zeros)[0]

        return strategy.run(local)

    train_batches = iter(strategy.experimental_distribute_dataset(dataset))
    measured = {
        "input": seconds_per_call(lambda: next(batches), steps, line_up),
        "compute": seconds_per_call(lambda: forward_backward(batch), steps, line_up),
        "all_reduce": seconds_per_call(gradient_sum, steps, line_up),
        "step": seconds_per_call(lambda: model.train_function(train_batches), steps, line_up),
    }
    collectives = collective_ops(model.train_function)
    others = max(collectives - gradient_reductions, 0)
    measured["other_collectives"] = others * seconds_per_call(scalar_sum, steps, line_up) if others else 0.0
    known = sum(measured[phase] for phase in PHASES if phase != "rest")
    measured["rest"] = measured["step"] - known
    return {
        **{key: round(value, 5) for key, value in measured.items()},
        "collectives_per_step": collectives,
        "workers": strategy.num_replicas_in_sync,
        "probe_steps": steps,
    }


def trace_steps(model, dataset, steps: int, logdir: str | None) -> None:
    """The compiled train step, `steps` times, under TensorFlow's profiler writing to logdir
    (TensorBoard's profile plugin opens it). logdir None: the same steps untraced, for a worker
    whose share of the collectives the traced one needs."""
    import tensorflow as tf

    strategy = model.distribute_strategy
    with strategy.scope():
        batches = iter(strategy.experimental_distribute_dataset(dataset))
        model.train_function(batches)  # traced and warm before the profiler starts
        if logdir:
            tf.profiler.experimental.start(logdir)
        try:
            for _ in range(steps):
                model.train_function(batches)
        finally:
            if logdir:
                tf.profiler.experimental.stop()
