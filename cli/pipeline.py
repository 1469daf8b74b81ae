"""stage and eda: run the dataset jobs on the cluster from a client container."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from invoke import Exit, task

from cli.data import default_dataset, ensure_dataset
from cli.execution import JobInterrupted, open_backend
from cli.flags import one_of, share, whole
from cli.progress import say
from cli.settings import kit_settings
from cluster.lifecycle import diagnose, space_problem
from jobs.eda_cifar import EdaArgs
from jobs.lib.barrier_training import RECIPES
from jobs.lib.gradient_reduction import GRADIENT_DTYPES
from jobs.stage_cifar import StageArgs
from jobs.train_cnn import TrainArgs

EXISTING_HELP = {
    "master": "an existing Spark 3.4 cluster's master URL (with --hdfs): the driver runs here",
    "hdfs": "that cluster's HDFS, e.g. hdfs://namenode.example:8020 (with --master)",
}


@task(
    help={
        "synthetic": "no dataset yet? generate the synthetic stand-in (see data.fetch)",
        "from_": "no dataset yet? take it from this cifar-10-binary.tar.gz",
        "shards": "TFRecord files per split (default data.shards)",
        "force": "stage again even when HDFS already holds these inputs",
        "embedded": "Spark's embedded local-cluster and a local folder instead of the containers and HDFS",
        **EXISTING_HELP,
        "project": "cluster name prefix",
    }
)
def stage(c, synthetic=False, from_=None, shards=None, force=False, embedded=False, master=None, hdfs=None, project=None):
    """Fetch CIFAR-10 if needed, then stage it into HDFS as TFRecord shards with a manifest."""
    shards = whole(shards, "--shards")
    folder = ensure_dataset(c, from_=from_, synthetic=synthetic)
    stage_with(c, open_backend(c, project, embedded, master, hdfs), folder, shards, force)


def stage_with(c, backend, folder: Path, shards=None, force=False) -> dict:
    report = None
    if backend.name == "cluster":
        report = backend.cluster.status()
        problem = diagnose(report)  # before the manifest is looked for: a cluster that is down says so
        if problem:
            raise Exit(f"kit: {problem}")
    shards = int(shards or kit_settings(c).data.shards)
    result = None if force else already_staged(backend, folder, shards)
    if result is None:
        if report:
            inputs = sum(path.stat().st_size for path in Path(folder).glob("*.bin"))
            # raw copies plus TFRecords (~3% framing), each replicated; the old staging stays until the swap
            problem = space_problem(report, int(inputs * 2.1 * backend.cluster.shape.replication * 2))
            if problem:
                raise Exit(f"kit: nothing was staged: {problem}")
        args = StageArgs(source="{source}", target=backend.data_url, shards=shards, force=force).to_argv()
        try:
            result = backend.run("stage_cifar", args, source=Path(folder), report=report)
        except JobInterrupted as interrupted:
            raise interrupted.keeping(
                f"{backend.data_url} is as it was before (a staging is swapped in whole or not at all); "
                "'./kit stage' starts it again",
            ) from None
    state = "already staged (same inputs)" if result["up_to_date"] else f"staged in {result['staging_seconds']}s"
    sizes = result["shard_bytes"]
    print(
        f"\n{backend.data_url}: {state}\n"
        f"| split | records | shards | records per class |\n|---|---|---|---|\n"
        f"| train | {result['train_records']} | {result['shards']} | {result['train_class_counts']} |\n"
        f"| test | {result['test_records']} | {result['shards']} | {result['test_class_counts']} |\n"
        f"train shard sizes: {min(sizes) / 1e6:.2f}-{max(sizes) / 1e6:.2f} MB; manifest checksum {result['checksum'][:16]}"
    )
    return result


def ensure_staged(c, backend) -> None:
    """Stage the default dataset first when nothing is staged where the backend reads its data."""
    if backend.read_json_if_exists(backend.data_url + "/manifest.json") is None:
        say(f"nothing is staged at {backend.data_url} yet: staging CIFAR-10 first ('./kit stage' does this alone)")
        stage_with(c, backend, default_dataset(c))


def already_staged(backend, folder: Path, shards: int) -> dict | None:
    """The staged manifest's summary when it was made from these inputs: no Spark job is needed.

    The job checks the same again before writing; this only spares a driver's start-up."""
    from jobs.stage_cifar import find_inputs, fingerprint, staged_already, summary

    manifest = backend.read_json_if_exists(backend.data_url + "/manifest.json")
    if not staged_already(manifest, fingerprint(find_inputs(str(folder)), shards)):
        return None
    return summary({**manifest, "up_to_date": True})


def finished(backend, run_id: str) -> bool:
    """Whether the run's folder is complete (renamed from .partial with its metrics); False when unsure."""
    try:
        return backend.read_json_if_exists(f"{backend.runs_url}/{run_id}/metrics.json") is not None
    except Exception:  # HDFS not answering as the user stops: report the run as resumable
        return False


@task(
    help={
        "fraction": "share of records analysed (sampled in the executors)",
        "out": "local results folder",
        "embedded": "Spark's embedded local-cluster and local storage (see stage)",
        **EXISTING_HELP,
        "project": "cluster name prefix",
    }
)
def eda(c, fraction=1.0, out=None, embedded=False, master=None, hdfs=None, project=None):
    """Label, brightness, contrast and pixel-range statistics of the staged data, with figures."""
    fraction = share(fraction, "--fraction")
    eda_with(c, open_backend(c, project, embedded, master, hdfs), fraction, out)


def eda_with(c, backend, fraction=1.0, out=None) -> dict:
    out_dir = Path(out or Path(kit_settings(c).data.results_dir) / "eda").resolve()
    args = EdaArgs(data=backend.data_url, out="{out}", fraction=fraction)
    result = backend.run("eda_cifar", args.to_argv(), out=out_dir)
    report = json.loads((out_dir / "eda.json").read_text())
    print(f"\nEDA of {backend.data_url} (fraction {report['fraction']}) in {result['seconds']}s")
    print("| split | images | mean pixel | mean brightness | mean contrast | mean pixel range |")
    print("|---|---|---|---|---|---|")
    for split, entry in report["splits"].items():
        print(
            f"| {split} | {entry['records_analysed']} | {entry['mean_pixel_value']:.1f} | {entry['mean_brightness']:.1f} "
            f"| {entry['mean_contrast']:.1f} | {entry['mean_pixel_range']:.1f} |"
        )
    print("figures: " + ", ".join(str(out_dir / name) for name in report["figures"]) + f"\njson: {out_dir / 'eda.json'}")
    sys.stdout.flush()
    return report


@task(
    help={
        "slots": "barrier tasks (workers)",
        "epochs": "most epochs (early stopping may end sooner)",
        "recipe": "paper (the reference protocol), scaled (learning rate x slots after a warm-up, then decaying to the last "
        "epoch) or tuned (scaled, augmented)",
        "cores_per_slot": "executor cores and TensorFlow threads per worker",
        "steps_per_epoch": "default: one pass over the training set",
        "gradient_dtype": "float32 or bfloat16: the dtype the workers' gradients are summed in (default train.gradient_dtype)",
        "run_id": "name of the run folder",
        "resume": "RUN_ID of an interrupted run: continue it from its last whole checkpoint, with its own settings",
        "attempts": "barrier-stage submissions; each resumes from the last checkpoint (default train.attempts)",
        "embedded": "Spark's embedded local-cluster and local storage (see stage)",
        **EXISTING_HELP,
        "project": "cluster name prefix",
    }
)
def train(
    c,
    slots=None,
    epochs=None,
    recipe=None,
    cores_per_slot=None,
    steps_per_epoch=None,
    gradient_dtype=None,
    run_id=None,
    resume=None,
    attempts=None,
    embedded=False,
    master=None,
    hdfs=None,
    project=None,
):
    """Train the reference CNN on N barrier slots (MultiWorkerMirroredStrategy); the chief writes the run to HDFS."""
    slots, epochs = whole(slots, "--slots"), whole(epochs, "--epochs")
    cores_per_slot, steps_per_epoch = whole(cores_per_slot, "--cores-per-slot"), whole(steps_per_epoch, "--steps-per-epoch")
    attempts = whole(attempts, "--attempts")
    one_of(recipe, "--recipe", RECIPES)
    one_of(gradient_dtype, "--gradient-dtype", GRADIENT_DTYPES)
    settings = kit_settings(c).train
    backend = open_backend(c, project, embedded, master, hdfs)
    ensure_staged(c, backend)
    common = {"data": backend.data_url, "runs": backend.runs_url, "recovery_wait": settings.recovery_wait}
    common["attempts"] = attempts or settings.attempts
    if resume:  # the run keeps its own settings; only what was asked now is checked against them
        run_id = resume
        drivers = backend.drivers_of(resume)
        if drivers:
            driver = drivers[0]
            raise Exit(
                f"kit: run {resume} is still being trained by {driver} (its driver outlived the command that "
                f"started it): follow it with 'docker logs -f {driver}', or 'docker stop {driver}' then resume"
            )
        asked = dict(
            slots=slots,
            epochs=epochs,
            recipe=recipe,
            cores_per_slot=cores_per_slot,
            steps_per_epoch=steps_per_epoch,
            gradient_dtype=gradient_dtype,
        )
        args = TrainArgs(**common, resume=resume, **asked)
    else:
        run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]  # named here, so Ctrl-C can
        args = TrainArgs(  # say what to resume
            **common,
            run_id=run_id,
            slots=slots or settings.slots,
            epochs=epochs or settings.epochs,
            recipe=recipe or settings.recipe,
            cores_per_slot=cores_per_slot or settings.cores_per_slot,
            batch_per_worker=settings.batch_per_worker,
            gradient_dtype=gradient_dtype or settings.gradient_dtype,
            steps_per_epoch=steps_per_epoch,
        )
    try:
        result = backend.run("train_cnn", args.to_argv())
    except JobInterrupted as interrupted:
        if finished(backend, run_id):  # Ctrl-C in the seconds between the rename and the job's exit
            raise interrupted.keeping(f"the run had finished by then: {backend.runs_url}/{run_id} is complete") from None
        raise interrupted.keeping(
            f"{backend.runs_url}/{run_id}.partial keeps its last whole checkpoint: "
            f"'./kit train --resume {run_id}' continues it",
        ) from None
    restarts = (
        f"; {result['restarts']} restart(s), resumed after epoch(s) {result['resumed_from_epochs']}, "
        f"epochs redone {result['epochs_redone']}"
        if result.get("restarts")
        else ""
    )
    print(
        f"\nrun {result['run_dir']}: {result['epochs_run']} epochs on {result['slots']} slot(s) x "
        f"{result['cores_per_slot']} core(s); test accuracy {result['test_accuracy']:.4f}, loss {result['test_loss']:.4f}; "
        f"training {result['train_seconds']}s (start-up {result['startup_seconds']}s), "
        f"{result['steady_images_per_second']} images/s after epoch 1{restarts}"
    )
