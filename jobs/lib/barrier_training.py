"""What each barrier task runs: the reference CNN trained under MultiWorkerMirroredStrategy.

train_fn is handed to MirroredStrategyRunner by the driver (jobs/train_cnn.py) and runs once per
slot. Worker 0 is the chief: only it writes to the run folder (checkpoints each epoch keeping
the last K, the final model, the sharding evidence; the driver writes metrics.json from what the chief
returns); the others save into local
temporary folders that are removed, as collective saving needs every worker. An attempt resumes
from the chief's last whole checkpoint (jobs/lib/resume.py).
"""

from __future__ import annotations

import json
import socket
import time

from jobs.lib import placement, resume
from jobs.lib import storage as storage_module
from jobs.lib.checkpointing import learning_rate_schedule, make_callbacks
from jobs.lib.history import epoch_history, training_summary, validation_steps
from jobs.lib.storage import open_storage, upload_folder

# paper: the study's protocol, whose global batch grows with the workers at a fixed learning rate;
# scaled: the same with the learning rate x workers after a warm-up (Goyal et al. 2017), so N
# workers take an epoch's fewer, larger steps as far, then decaying to the end of the run (with 1
# worker too, so 1 and N slots follow the same schedule); tuned: scaled, with random flips and crops
RECIPES = ("paper", "scaled", "tuned")
SCALES_LEARNING_RATE = ("scaled", "tuned")


def train_fn(config: dict):
    import os
    import shutil
    import tempfile

    import tensorflow as tf
    import tf_keras as keras
    from pyspark import BarrierTaskContext

    from jobs.lib import input_pipeline
    from jobs.lib.cnn import build_model
    from jobs.lib.epoch_metrics import sync_metrics_once_per_epoch
    from jobs.lib.gradient_reduction import sum_gradients_in

    marks = [("train_fn", time.time())]
    # a Python worker may be reused by the next attempt: the evidence counts this attempt only
    for tally in (input_pipeline.FETCHES, input_pipeline.READS, storage_module.WRITES):
        tally.clear()
    context = BarrierTaskContext.get()
    worker = context.partitionId()
    cpus = None
    if config["pin_cores"]:
        addresses = [t.address for t in context.getTaskInfos()]
        cpus = placement.pin_slot(addresses, worker, config["cores_per_slot"], config["first_core"])
    workers = config["slots"]
    chief = worker == 0
    storage = open_storage(config["runs"])
    run_dir = config["partial_dir"]
    keras.utils.set_random_seed(config["seed"])

    local = tempfile.mkdtemp(prefix=f"dlkit-worker{worker}-")
    scratch = local if chief else os.path.join(local, f"workertemp_{worker}")
    os.makedirs(scratch, exist_ok=True)

    learning_rate = 1e-3
    if config["recipe"] in SCALES_LEARNING_RATE:
        learning_rate *= workers
    model = build_model(learning_rate)
    sum_gradients_in(model.optimizer, config["gradient_dtype"])

    global_batch = config["batch_per_worker"] * workers
    fetch = input_pipeline.make_fetch(config["data"], os.path.join(local, "shards"))
    # short epochs train (and validate) on the records one epoch reads, cached in epoch 1
    train = input_pipeline.make_dataset(
        config["data"],
        config["train_files"],
        global_batch,
        training=True,
        seed=config["seed"],
        augmentation=config["recipe"] == "tuned",
        fetch=fetch,
        records=config["epoch_records"],
    )
    test = input_pipeline.make_dataset(config["data"], config["test_files"], global_batch, training=False, fetch=fetch)
    validation_batches = validation_steps(config["validation_records"], config["test_records"], global_batch)
    validation = (
        test
        if validation_batches is None
        else input_pipeline.make_dataset(
            config["data"],
            config["test_files"],
            global_batch,
            training=False,
            fetch=fetch,
            records=validation_batches * config["batch_per_worker"],
        )
    )

    marks.append(("datasets", time.time()))
    history = epoch_history(config["steps_per_epoch"], global_batch)
    # an earlier attempt failed: carry on from its last whole checkpoint
    initial_epoch, state, best_weights = resume.restore(
        model, storage, storage.join(run_dir, "checkpoints"), os.path.join(local, "restored")
    )
    if state:
        history.rows = state["history"]
    # only the chief keeps the attempts: another worker could read the file while the chief rewrites it
    attempts = resume.begin_attempt(resume.read_attempts(storage, run_dir) if chief else [], initial_epoch, config["driver"])
    if chief:
        resume.remove_unfinished(storage, storage.join(run_dir, "checkpoints"))
        storage.replace_bytes(storage.join(run_dir, "attempts.json"), json.dumps(attempts).encode())

    stopping, checkpoints = make_callbacks(
        keras,
        chief=chief,
        storage=storage,
        run_dir=run_dir,
        scratch=scratch,
        state=state,
        best_weights=best_weights,
        attempts=attempts,
        history=history,
        marks=marks,
        config=config,
    )
    # the workers' summed metrics first, so the others see them; the checkpoint holds this epoch's stopping state
    callbacks = [sync_metrics_once_per_epoch(model), history, stopping, checkpoints]
    if config["recipe"] in SCALES_LEARNING_RATE:
        # a warm-up of at most 3 epochs (flat with 1 worker), never the whole run: a short run's last
        # epoch trains at the scaled rate; the decay starts after it
        warmup_epochs = min(3, config["epochs"] - 1)
        callbacks.append(learning_rate_schedule(learning_rate / workers, learning_rate, warmup_epochs, config["epochs"]))
    marks.append(("fit", time.time()))
    started = time.monotonic()
    model.fit(
        train,
        epochs=config["epochs"],
        initial_epoch=initial_epoch,
        steps_per_epoch=config["steps_per_epoch"],
        validation_data=validation,
        validation_steps=validation_batches,
        callbacks=callbacks,
        verbose=0,
    )
    # every attempt's epochs, so a resumed run reports its whole training time
    train_seconds = sum(row["seconds"] for row in history.rows) if state else time.monotonic() - started
    marks.append(("fit_end", time.time()))
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    marks.append(("evaluated", time.time()))

    final = os.path.join(scratch, "final_model.keras")
    model.save(final)
    train_fetched = sorted(f for f in input_pipeline.FETCHES if f in config["train_records"])
    evidence = {
        "worker": worker,
        "host": socket.gethostname(),  # the Spark worker it ran on (its container's name on the network)
        "cpus": cpus,
        "peak_rss_mb": placement.peak_rss_mb(),
        "train_files": train_fetched,
        "train_records_in_files": sum(config["train_records"][f] for f in train_fetched),
        "fetched": dict(input_pipeline.FETCHES),
        "records_read": dict(input_pipeline.READS),
        "storage_writes": dict(storage_module.WRITES),  # before the chief's final writes below
    }
    marks.append(("saved", time.time()))
    if config["probe_steps"]:
        from jobs.lib.step_probe import probe_step

        evidence["step_phases"] = probe_step(model, train, config["probe_steps"], gradient_dtype=config["gradient_dtype"])
        marks.append(("probed", time.time()))
    trace = os.path.join(local, "profile") if chief else None  # the chief's view: its steps, waits included
    if config["profile"] and config["probe_steps"]:
        from jobs.lib.step_probe import trace_steps

        trace_steps(model, train, config["probe_steps"], trace)
        marks.append(("traced", time.time()))
    everyone = [json.loads(e) for e in context.allGather(json.dumps(evidence))]
    marks.append(("gathered", time.time()))
    if not chief:
        shutil.rmtree(local, ignore_errors=True)
        return None

    metrics = {
        "run_id": config["run_id"],
        "slots": workers,
        "cores_per_slot": config["cores_per_slot"],
        "recipe": config["recipe"],
        "seed": config["seed"],
        "batch_per_worker": config["batch_per_worker"],
        "global_batch": global_batch,
        "learning_rate": learning_rate,
        "gradient_dtype": config["gradient_dtype"],
        "steps_per_epoch": config["steps_per_epoch"],
        **training_summary(history.rows, test_loss, test_accuracy, train_seconds),
        "workers": [{key: e[key] for key in ("worker", "host", "cpus", "peak_rss_mb")} for e in everyone],
        "step_phases": evidence.get("step_phases"),
        **resume.summary(attempts),
        "marks": marks,
        "versions": {"tensorflow": tf.__version__, "tf_keras": keras.__version__},
    }
    storage.write_bytes(storage.join(run_dir, "final_model.keras"), open(final, "rb").read())
    if config["profile"] and config["probe_steps"]:
        upload_folder(storage, trace, storage.join(run_dir, "profile"))
    storage.write_bytes(
        storage.join(run_dir, "sharding.json"), json.dumps(sorted(everyone, key=lambda e: e["worker"]), indent=2).encode()
    )
    shutil.rmtree(local, ignore_errors=True)
    return metrics
