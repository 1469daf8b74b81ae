"""Synchronous data-parallel training of the reference CNN on Spark barrier tasks: the driver.

MirroredStrategyRunner (spark-tensorflow-distributor) starts one barrier task per slot and runs
jobs/lib/barrier_training.train_fn under MultiWorkerMirroredStrategy. The driver checks the slots,
records the run's settings, follows its progress and submits it again when it fails. The run
folder is written as <run>.partial and renamed when complete, so it never appears half-written.

A failed barrier stage is submitted again, and every attempt resumes from the chief's last
whole checkpoint (jobs/lib/resume.py): a lost executor costs the interrupted epoch, not the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
import uuid

from jobs.lib import placement
from jobs.lib.barrier_training import RECIPES, train_fn
from jobs.lib.contract import JobArgs, flag
from jobs.lib.gradient_reduction import GRADIENT_DTYPES
from jobs.lib.result import run_main
from jobs.lib.session import spark_session
from jobs.lib.storage import download_folder, open_storage

# a scheduler call through py4j (and, while recovering, a look at the master's JSON): cheap, and
# every run starts that much sooner
SLOT_POLL_SECONDS = 0.5
# each read of the chief's progress is namenode and datanode work on the cores that train: an
# epoch takes a minute or more, so a line up to 10 s late costs nothing
PROGRESS_POLL_SECONDS = 10.0
MASTER_UI_PORT = 8080  # the standalone master's default, also the kit's (cluster/topology.py)


class SetupError(RuntimeError):
    """A run that cannot start (too few free slots or shards, a run id in use), said before training."""


class TrainingFailed(RuntimeError):
    """Every attempt of the barrier stage failed."""


class ApplicationEnded(RuntimeError):
    """The master ended the application while the driver waited for slots in it."""


@dataclasses.dataclass(frozen=True)
class TrainArgs(JobArgs):
    """None means not given: a new run needs every KIT_SETTINGS field (the kit passes its settings),
    a resumed one takes its own from its settings.json, and JOB_DEFAULTS fill the rest."""

    data: str = flag("storage URL of the staged dataset (manifest.json)")
    runs: str = flag("storage URL under which the run folder is written")
    run_id: str | None = flag("name of the run folder (default: the time and a random suffix)", default=None)
    resume: str | None = flag(
        "RUN_ID of an interrupted run (its folder is <run-id>.partial): continue it from its last whole checkpoint, "
        "with the settings it was started with",
        default=None,
    )
    slots: int | None = flag("barrier tasks (workers)", default=None, low=1)
    cores_per_slot: int | None = flag("TensorFlow threads per worker", default=None, low=1)
    epochs: int | None = flag("most epochs (early stopping may end sooner)", default=None, low=1)
    batch_per_worker: int | None = flag("per-worker batch; the global batch is this x slots", default=None, low=1)
    recipe: str | None = flag("paper, scaled or tuned", default=None, choices=RECIPES)
    gradient_dtype: str | None = flag(
        "dtype in which the workers' gradients are summed each step (bfloat16: half the bytes)",
        default=None,
        choices=GRADIENT_DTYPES,
    )
    attempts: int | None = flag(
        "barrier-stage submissions before giving up; each resumes from the last checkpoint", default=None, low=1
    )
    recovery_wait: float | None = flag("seconds to wait for lost executors to come back between attempts", default=None, low=0)
    patience: int | None = flag("early stopping's patience in epochs (default 5)", default=None, low=1)
    keep_checkpoints: int | None = flag("whole checkpoints kept (default 3)", default=None, low=1)
    seed: int | None = flag("default 42", default=None)
    validation_records: int | None = flag(
        "test records validated after each epoch (default: all; the final test uses all)", default=None, low=1
    )
    steps_per_epoch: int | None = flag("default: one pass over the training set", default=None, low=1)
    probe_steps: int = flag(
        "after training, time this many steps phase by phase: input, compute, all-reduce, the rest (0: no probe)",
        default=0,
        low=0,
    )
    profile: str | None = flag(
        "a local folder for a TensorFlow profiler trace of the chief's steps after the probe (probe-steps of them)",
        default=None,
    )
    pin_cores: bool = flag("let the workers' threads float instead of giving each slot cores of its own", default=True)
    first_core: int = flag(
        "pin each host's slots from this CPU on: two runs side by side on one host, each on cores of its own",
        default=0,
        low=0,
    )
    master: str | None = flag("Spark master (default: spark-defaults)", default=None)

    def given(self) -> set[str]:
        """The run settings this command line gave (a resumed run refuses only those that differ)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {key for key in RUN_SETTINGS if getattr(self, key) != defaults[key]}


KIT_SETTINGS = ("slots", "cores_per_slot", "epochs", "batch_per_worker", "recipe", "gradient_dtype")
JOB_DEFAULTS = {"patience": 5, "keep_checkpoints": 3, "seed": 42}
RECORDED_BEFORE = {"gradient_dtype": "float32"}  # settings a run recorded before they existed: what it used


def parse_args(argv) -> TrainArgs:
    args = TrainArgs.parse(argv, __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    missing = [
        key for key in ("attempts", "recovery_wait") + (() if args.resume else KIT_SETTINGS) if getattr(args, key) is None
    ]
    if missing:
        TrainArgs.parser().error(
            "the following arguments are required"
            + (" for a new run" if not args.resume else "")
            + ": "
            + ", ".join("--" + key.replace("_", "-") for key in missing)
        )
    return args


# Settings a run is started with (settings.json in its folder); --resume takes them from there.
RUN_SETTINGS = (
    "data",
    "slots",
    "cores_per_slot",
    "epochs",
    "batch_per_worker",
    "recipe",
    "patience",
    "keep_checkpoints",
    "seed",
    "steps_per_epoch",
    "validation_records",
    "pin_cores",
    "gradient_dtype",
)


def resume_settings(args: TrainArgs, recorded: dict) -> TrainArgs:
    """args with the run's recorded settings; a flag given now with another value is refused."""
    recorded = {**RECORDED_BEFORE, **recorded}
    differing = [
        f"--{key.replace('_', '-')} {getattr(args, key)} (the run has {recorded[key]})"
        for key in sorted(args.given())
        if key in recorded and getattr(args, key) != recorded[key]
    ]
    if differing:
        raise SetupError(
            f"run {args.resume} was started with other settings: {'; '.join(differing)}. Resume it "
            "without those flags (it keeps its own), or start a new run"
        )
    return dataclasses.replace(args, **{key: recorded[key] for key in RUN_SETTINGS if key in recorded})


def with_job_defaults(args: TrainArgs) -> TrainArgs:
    return dataclasses.replace(args, **{key: value for key, value in JOB_DEFAULTS.items() if getattr(args, key) is None})


# ---- slots (driver) ----------------------------------------------------------------------
def free_slots(sc, cores_per_slot: int) -> int:
    """Barrier slots the registered executors offer (each executor's cores // spark.task.cpus).

    Asked of the scheduler itself, as Spark's own barrier check does: no UI round trip, which
    a busy driver may answer too slowly.
    """
    scala = sc._jsc.sc()
    return int(scala.maxNumConcurrentTasks(scala.resourceProfileManager().defaultResourceProfile()))


def executor_jvm_peak_mb(sc) -> dict:
    """Peak JVM heap + off-heap per executor, from Spark's executor metrics (the Python side is in workers)."""
    import urllib.request

    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            executors = json.load(response)
    except (OSError, ValueError):  # metrics are a report's extra, never a reason to fail the run
        return {}
    return {
        e["id"]: round(
            (e.get("peakMemoryMetrics", {}).get("JVMHeapMemory", 0) + e.get("peakMemoryMetrics", {}).get("JVMOffHeapMemory", 0))
            / 2**20,
            1,
        )
        for e in executors
        if e["id"] != "driver"
    }


def check_slots(
    sc,
    slots: int,
    cores_per_slot: int,
    wait_seconds: float = 20.0,
    registration_wait: float = 120.0,
    ended=lambda: False,
    most: int | None = None,
) -> int:
    """Waits until `slots` barrier slots are free, or until waiting cannot help, and says which.

    Executors register some seconds after the driver starts (8 s here, more on a loaded host), so
    with none registered it waits up to `registration_wait`; once some are, it waits until no new
    slot has appeared for `wait_seconds`, or until `most` are free (all the workers can offer:
    no more can come); and never longer than registration_wait + 3 x wait_seconds in all. Every
    bound ends in an error naming what is missing. ended() says the application is gone (no
    executor can register with it any more): ApplicationEnded.
    """
    started = changed = time.monotonic()
    # executors that keep dying and coming back would reset the per-change wait for ever
    give_up_at = started + registration_wait + 3 * wait_seconds
    free = free_slots(sc, cores_per_slot)
    shown = 0.0
    while free < slots:
        if most and free >= most:
            break
        now = time.monotonic()
        if now - changed >= (wait_seconds if free else max(wait_seconds, registration_wait)):
            break
        if now >= give_up_at:
            raise SetupError(
                f"the free slots kept changing for {now - started:.0f}s without reaching {slots} "
                f"(now {free}): executors are dying and coming back. See './kit logs spark-worker' "
                "for why (often: out of memory), then try again."
            )
        if now - started - shown >= 10:
            shown = now - started
            print(f"train: waiting for executors: {free} of {slots} slot(s) free [{shown:.0f}s]", file=sys.stderr, flush=True)
        time.sleep(SLOT_POLL_SECONDS)
        if ended():
            raise ApplicationEnded("the Spark master ended this application")
        found = free_slots(sc, cores_per_slot)
        if found != free:
            free, changed = found, time.monotonic()
    if free == 0:
        raise SetupError(
            f"no executor registered with the driver within {time.monotonic() - started:.0f}s: "
            "the Spark worker is down, busy or out of memory. See './kit status' and "
            "'./kit logs spark-worker' (with --embedded, the messages above), then try again."
        )
    if free < slots:
        raise SetupError(
            f"asked for {slots} slots of {cores_per_slot} cores, but the cluster has {free} free "
            f"(barrier mode needs them all at once). Ask for --slots {free} or fewer, or give the "
            "worker more cores (cluster.worker_cores) and run './kit up' again."
        )
    return free


# ---- driver ---------------------------------------------------------------------------------
def failure_reason(error: Exception) -> str:
    """The line of a failed job that says why: a lost executor, or the Python exception of a task."""
    import re

    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "ExecutorLostFailure" in line:
            return line[:300]
    for line in lines:
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b", line) and not line.startswith("py4j"):
            return line[:300]
    return lines[0][:300] if lines else type(error).__name__


class Application:
    """The run's Spark application, replaced by a new one when the master ends it.

    When a worker goes away (a container restart, a node reboot), the standalone master may
    remove the whole application ("Master removed our application: FAILED") and its
    SparkContext stops: no executor can register with it again. A new application can.
    A restarted master (the kit runs it without a recovery mode) knows no application from
    before: it kills their executors when the worker registers again, and the SparkContext
    never hears of it. So an application the master no longer lists as active has ended too.
    """

    def __init__(self, start):
        self.start = start
        self.spark = start()

    @property
    def sc(self):
        return self.spark.sparkContext

    def ended(self) -> bool:
        if self.sc._jsc is None or self.sc._jsc.sc().isStopped():
            return True
        active = master_active_apps(self.sc.master)
        return active is not None and self.sc.applicationId not in active

    def renew(self) -> None:
        self.stop()
        self.spark = self.start()

    def stop(self) -> None:
        try:
            self.spark.stop()
        except Exception:  # an application the master ended may fail to stop cleanly; it is gone either way
            pass


def master_json_url(master: str) -> str | None:
    """spark://host:7077 -> the standalone master UI's JSON (its default port); None for other masters."""
    if not master.startswith("spark://"):
        return None
    host = master[len("spark://") :].split(",")[0].rsplit(":", 1)[0]
    return f"http://{host}:{MASTER_UI_PORT}/json/"


def master_state(master: str, opener=None) -> dict | None:
    """A standalone master's JSON; None when it cannot say (another kind of master, or one that
    is away: a restarting master is not yet a verdict)."""
    import http.client
    import urllib.request

    url = master_json_url(master)
    if url is None:
        return None
    try:
        with (opener or urllib.request.urlopen)(url, timeout=5) as response:
            state = json.load(response)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return state if isinstance(state, dict) else None


def master_active_apps(master: str, opener=None) -> set[str] | None:
    """The ids of the applications a standalone master runs, or None (see master_state)."""
    state = master_state(master, opener)
    try:
        return None if state is None else {app["id"] for app in state.get("activeapps", [])}
    except (KeyError, TypeError):
        return None


def master_slot_capacity(master: str, cores_per_slot: int, opener=None) -> int | None:
    """The most slots of cores_per_slot the master's alive workers could ever offer (memory and
    other applications may allow fewer), or None when the master cannot say."""
    state = master_state(master, opener)
    try:
        workers = [w for w in (state or {}).get("workers", []) if w["state"] == "ALIVE"]
        return sum(int(w["cores"]) // cores_per_slot for w in workers) or None
    except (KeyError, TypeError, ValueError):
        return None


def run_with_retries(app: Application, args, submit):
    """Submits the barrier stage again when it fails (an executor lost, a worker restarted).

    Spark itself retries a failed barrier stage a few times; when it gives up, the job fails and
    this submits it again once the slots are back, in a new application when the master ended
    the old one. Every attempt resumes from the chief's last whole checkpoint (see
    jobs/lib/resume.py), so only the interrupted epoch is redone.
    """
    for attempt in range(1, args.attempts + 1):
        try:
            return submit()
        except Exception as error:  # Py4JJavaError from the failed job; its text is the stage's failure
            reason = failure_reason(error)
            if attempt == args.attempts:
                raise TrainingFailed(
                    f"training failed {attempt} time(s); the last failure: {reason}. The run folder "
                    "keeps its checkpoints: see './kit logs spark-worker' for the cause"
                ) from error
            print(
                f"train: attempt {attempt} of {args.attempts} failed ({reason}); waiting up to "
                f"{args.recovery_wait:.0f}s for {args.slots} free slot(s), then resuming from the last checkpoint",
                file=sys.stderr,
                flush=True,
            )
            wait_for_slots(app, args)


def wait_for_slots(app: Application, args) -> None:
    """The slots back for the next attempt, in a new application when the master ended this one
    (it may do so seconds after the stage failed, while the driver already waits)."""
    for _ in range(args.attempts):
        if app.ended():
            print(
                "train: the Spark master ended this application (a worker was lost or restarted, or the master "
                "itself): starting a new application for the next attempt",
                file=sys.stderr,
                flush=True,
            )
            app.renew()
        try:
            check_slots(
                app.sc,
                args.slots,
                args.cores_per_slot,
                wait_seconds=args.recovery_wait,
                registration_wait=args.recovery_wait,
                ended=app.ended,
            )
            return
        except ApplicationEnded:
            continue
    raise TrainingFailed(
        f"the Spark master ended {args.attempts} applications in a row while the driver waited for "
        "slots: see './kit logs spark-master' and './kit logs spark-worker'"
    )


def follow_progress(storage, run_dir: str, epochs: int, stop: threading.Event) -> None:
    """Prints each epoch as the chief reports it: training runs on the executors, not here."""
    shown = 0
    path = storage.join(run_dir, "progress.jsonl")
    stopped = False
    while not stopped:
        stopped = stop.wait(PROGRESS_POLL_SECONDS)  # once more when stopped: the last epochs' lines
        try:
            rows = [json.loads(line) for line in storage.read_bytes(path).decode().splitlines()]
        except Exception:  # not written yet
            continue
        for row in rows[shown:]:
            print(
                f"train: epoch {row['epoch']}/{epochs} loss {row['loss']:.4f} acc {row['accuracy']:.4f} "
                f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
                f"{row['seconds']:.1f}s ({row['train_seconds']:.1f}s training, {row['images_per_second']:.0f} img/s)",
                file=sys.stderr,
                flush=True,
            )
        shown = len(rows)


def run(args) -> dict:
    from spark_tensorflow_distributor import MirroredStrategyRunner

    driver_started = time.time()
    run_id = args.resume or args.run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    runs = open_storage(args.runs)
    run_dir = runs.join(args.runs, run_id)
    if runs.exists(run_dir):
        raise SetupError(
            f"{run_dir} is complete already: nothing to resume"
            if args.resume
            else f"{run_dir} exists already: choose another --run-id"
        )
    if args.resume:
        settings = runs.join(run_dir + ".partial", "settings.json")
        if not runs.exists(settings):
            raise SetupError(
                f"no interrupted run {run_id} under {args.runs} ({run_id}.partial with its settings.json): "
                "'./kit status' lists the interrupted runs"
            )
        args = resume_settings(args, json.loads(runs.read_bytes(settings)))
    args = with_job_defaults(args)  # before settings.json records them
    storage = open_storage(args.data)
    manifest = json.loads(storage.read_bytes(storage.join(args.data, "manifest.json")))
    train_files = [s["file"] for s in manifest["splits"]["train"]["shards"]]
    if len(train_files) < args.slots:
        raise SetupError(
            f"{len(train_files)} training shards cannot be split by FILE over {args.slots} workers: "
            f"stage with --shards {args.slots} or more"
        )
    cores = str(args.cores_per_slot)
    app = Application(
        lambda: spark_session(
            f"train-cnn-{args.slots}x{args.cores_per_slot}",
            args.master,
            {
                "spark.executorEnv.TF_NUM_INTRAOP_THREADS": cores,
                "spark.executorEnv.TF_NUM_INTEROP_THREADS": str(placement.INTEROP_THREADS),
                "spark.executorEnv.OMP_NUM_THREADS": cores,
                "spark.task.cpus": cores,
                "spark.executor.cores": cores,
                # only the executors its slots need: another application (a second run, a user's
                # own job) gets the rest, where standalone would otherwise give this one them all
                "spark.cores.max": str(args.slots * args.cores_per_slot),
                # with a cores.max, Spark would hold the SparkContext's start until that many cores
                # registered (up to 120 s when the cluster has fewer): check_slots waits instead,
                # with progress and a clear error
                "spark.scheduler.minRegisteredResourcesRatio": "0",
            },
        )
    )
    stop = threading.Event()
    try:
        # asking for more slots than the workers have fails once they have all registered,
        # not after waiting for slots that cannot come (only here: between attempts a worker
        # may be away for a while)
        check_slots(app.sc, args.slots, args.cores_per_slot, most=master_slot_capacity(app.sc.master, args.cores_per_slot))
        config = {
            "data": args.data,
            "runs": args.runs,
            "run_id": run_id,
            "partial_dir": run_dir + ".partial",
            "slots": args.slots,
            "cores_per_slot": args.cores_per_slot,
            "epochs": args.epochs,
            "batch_per_worker": args.batch_per_worker,
            "recipe": args.recipe,
            "patience": args.patience,
            "keep_checkpoints": args.keep_checkpoints,
            "seed": args.seed,
            "probe_steps": args.probe_steps,
            "profile": bool(args.profile),
            "pin_cores": args.pin_cores,
            "first_core": args.first_core,
            "gradient_dtype": args.gradient_dtype,
            "epoch_records": args.steps_per_epoch * args.batch_per_worker if args.steps_per_epoch else None,
            "driver": uuid.uuid4().hex[:8],
            "validation_records": args.validation_records,
            "test_records": manifest["splits"]["test"]["records"],
            "train_files": train_files,
            "test_files": [s["file"] for s in manifest["splits"]["test"]["shards"]],
            "train_records": {s["file"]: s["records"] for s in manifest["splits"]["train"]["shards"]},
            "steps_per_epoch": args.steps_per_epoch
            or manifest["splits"]["train"]["records"] // (args.batch_per_worker * args.slots),
        }
        if not args.resume:
            runs.delete(config["partial_dir"])
            runs.replace_bytes(
                runs.join(config["partial_dir"], "settings.json"),
                # as asked (steps_per_epoch None = a full pass), not as derived from the manifest
                json.dumps({key: getattr(args, key) for key in RUN_SETTINGS}).encode(),
            )
        follower = threading.Thread(target=follow_progress, args=(runs, config["partial_dir"], args.epochs, stop), daemon=True)
        follower.start()
        started = time.monotonic()
        submitted = time.time()
        metrics = run_with_retries(
            app, args, lambda: MirroredStrategyRunner(num_slots=args.slots, use_gpu=False).run(train_fn, config=config)
        )
        metrics["wall_seconds"] = round(time.monotonic() - started, 1)
        returned = time.time()
        stop.set()
        follower.join(timeout=60)  # its last read, before the run folder is renamed under it
        # when each phase of the run began, in seconds from the driver's start: where start-up goes
        metrics["timeline"] = [
            [name, round(at - driver_started, 1)]
            for name, at in [("submitted", submitted), *metrics.pop("marks"), ("returned", returned)]
        ]
        metrics["executor_jvm_peak_mb"] = executor_jvm_peak_mb(app.sc)
        metrics["startup_seconds"] = round(metrics["wall_seconds"] - metrics["train_seconds"], 1)
        runs.write_bytes(runs.join(config["partial_dir"], "metrics.json"), json.dumps(metrics, indent=2).encode())
        runs.rename(config["partial_dir"], run_dir)
        trace = runs.join(run_dir, "profile")
        if args.profile and args.probe_steps and runs.exists(trace):
            metrics["profile_files"] = download_folder(runs, trace, args.profile)
    finally:
        stop.set()
        app.stop()
    return {**metrics, "run_dir": run_dir}


def main(argv=None) -> dict:
    # the whole metrics (history included) travel in the result line: nobody re-reads metrics.json
    return run_main("train", run, parse_args(argv), (SetupError, TrainingFailed))


if __name__ == "__main__":
    main()
