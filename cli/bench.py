"""bench: 1 slot against 2 (or any list) on the same data and seed, with baselines and resource use."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable

from invoke import Exit, task

from cli.data import dataset_dir, synthetic_spec
from cli.execution import JobInterrupted, open_backend, run_together
from cli.flags import USAGE_ERROR, one_of, whole
from cli.gate import MIN_EPOCHS, MIN_SEEDS, TOLERANCE_PP, accuracy_gate, combined_gate, epoch_markdown, gate_line
from cli.hostcpu import StealMeter, steal_warning
from cli.pipeline import EXISTING_HELP, ensure_staged
from cli.settings import kit_settings, slot_counts
from cli.spread import ratio_markdown, ratio_table
from cli.step_phases import draw_step_phases, step_markdown
from jobs.lib.barrier_training import RECIPES
from jobs.lib.gradient_reduction import GRADIENT_DTYPES
from jobs.train_cnn import JOB_DEFAULTS, TrainArgs
from jobs.train_mllib import MllibArgs
from jobs.train_plain import PlainArgs

CEILING_STEPS = 1000
BASELINES = ("plain", "ceiling", "mllib")


def baseline_names(baselines) -> list[str]:
    wanted = [b.strip() for b in str(baselines).split(",") if b.strip()]
    unknown = sorted(set(wanted) - set(BASELINES))
    if unknown:
        raise Exit(
            f"kit: --baselines: unknown {', '.join(unknown)}: use {', '.join(BASELINES)}, or '' for none", code=USAGE_ERROR
        )
    return wanted


def median_run(runs: list[dict]) -> dict:
    """The run whose rate is the median (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda run: run["steady_images_per_second"] or 0)
    return ordered[(len(ordered) - 1) // 2]


def epoch_seconds(history: list[dict]) -> str:
    """Mean seconds per epoch after the first (total / of which training), as the study reports them."""
    rows = history[1:] or history
    if not rows:
        return "-"
    return f"{sum(r['seconds'] for r in rows) / len(rows):.1f} / {sum(r['train_seconds'] for r in rows) / len(rows):.1f}"


def loss_cell(row: dict) -> str:
    """MLlib's MLP reports no test loss: a dash, not nan."""
    return f"{row['test_loss']:.4f}" if row.get("test_loss") is not None else "-"


def steal_readings(configurations: list[dict], baselines: dict) -> list[tuple[str, float | None]]:
    """(label, CPU steal %) of every measurement, in report order; None where it was not metered."""
    return [(row["label"], row.get("host_steal_percent")) for row in configurations] + [
        (f"baseline {name}", row.get("host_steal_percent")) for name, row in baselines.items()
    ]


def with_steal(run) -> dict:
    """run()'s result with the CPU steal measured while it ran."""
    with StealMeter() as steal:
        result = run()
    return {**result, "host_steal_percent": steal.percent}


def report_markdown(results: dict) -> str:
    lines = [
        "| configuration | test accuracy | test loss | training time (s) | epochs "
        "| s per epoch (all / training) | images/s (after epoch 1) | speed-up | scaling efficiency | start-up (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["configurations"]:
        lines.append(
            f"| {row['label']} | {row['test_accuracy']:.4f} | {row['test_loss']:.4f} | {row['train_seconds']} "
            f"| {row['epochs_run']} | {epoch_seconds(row['history'])} | {row['steady_images_per_second']} "
            f"| {row.get('speed_up', '-')} | {row.get('efficiency', '-')} | {row.get('startup_seconds', '-')} |"
        )
    for name, row in results["baselines"].items():
        rate = row.get("steady_images_per_second", "-")
        lines.append(
            f"| baseline {name} ({row.get('model', 'tf-keras, ' + str(row.get('threads')) + ' thread(s)')}) "
            f"| {row['test_accuracy']:.4f} | {loss_cell(row)} | {row['train_seconds']} "
            f"| {row.get('epochs_run', '-')} | {epoch_seconds(row.get('history', []))} | {rate} | - | - | - |"
        )
    text = "\n".join(lines) + "\n"
    if results.get("gradient_dtype"):
        text += (
            f"\nRecipe {results.get('recipe')}, batch {results.get('batch_per_worker')} per worker; the workers' gradients "
            f"are summed in {results['gradient_dtype']}.\n"
        )
    if results.get("kit_vs_plain") is not None:
        text += f"\nKit 1-slot rate / plain tf-keras rate on the same cores: {results['kit_vs_plain']:.3f}\n"
    text += ratio_markdown(results.get("ratios", {}))
    text += step_markdown(results)
    if results.get("accuracy_gate"):
        text += f"\n**{gate_line(results['accuracy_gate'])}**\n\n" + epoch_markdown(results["accuracy_gate"])
    ceiling = results["baselines"].get("ceiling")
    if ceiling:
        widest = max(results["configurations"], key=lambda row: row["slots"])
        text += (
            f"\nHost ceiling: {ceiling['copies']} independent copies reach {ceiling['steady_images_per_second']} images/s "
            f"together ({ceiling['per_copy_images_per_second']} each). The {widest['label']} run reaches "
            f"{widest['steady_images_per_second'] / ceiling['steady_images_per_second']:.3f} of it.\n"
        )
    steal = steal_readings(results["configurations"], results["baselines"])
    if any(percent is not None for _, percent in steal):
        text += (
            "\nCPU steal (time the hypervisor took from this machine) during each measurement: "
            + ", ".join(f"{label} {percent}%" for label, percent in steal if percent is not None)
            + "\n"
        )
    text += (
        "\nWhere each slot ran (its Spark worker), and memory per executor (peak): Python training process RSS "
        "and executor JVM heap + off-heap, MB:\n\n"
    )
    text += "| configuration | worker | ran on | cores pinned | Python RSS | executor JVMs |\n|---|---|---|---|---|---|\n"
    for row in results["configurations"]:
        jvms = ", ".join(f"{key}: {value}" for key, value in sorted(row.get("executor_jvm_peak_mb", {}).items()))
        for worker in row.get("workers", []):
            text += (
                f"| {row['label']} | {worker['worker']} | {worker.get('host', '?')} | {worker['cpus']} "
                f"| {worker['peak_rss_mb']} | {jvms} |\n"
            )
    text += "\nResource use (mean CPU %, peak memory MB) per container, per configuration:\n\n"
    text += "| configuration | container | mean CPU % | peak memory MB |\n|---|---|---|---|\n"
    for row in results["configurations"]:
        for name, usage in row["resources"].items():
            cpu = "-" if usage["mean_cpu_percent"] is None else usage["mean_cpu_percent"]  # read once only
            text += f"| {row['label']} | {name} | {cpu} | {usage['peak_memory_mb']} |\n"
    for warning in results["warnings"]:
        text += f"\n> warning: {warning}\n"
    if results.get("synthetic"):
        difficulty = results["synthetic"].get("difficulty", "easy") if isinstance(results["synthetic"], dict) else "easy"
        text += (
            f"\n> The data is the synthetic stand-in (difficulty {difficulty}): accuracies are not comparable with "
            "published CIFAR-10 results.\n"
        )
    return text


def draw_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (accuracy, loss) = plt.subplots(1, 2, figsize=(11, 4))
    series = [(row["label"], row["history"]) for row in results["configurations"]]
    if "plain" in results["baselines"]:
        series.append(("plain tf-keras", results["baselines"]["plain"]["history"]))
    for index, (label, history) in enumerate(series):
        epochs = [h["epoch"] for h in history]
        colour = f"C{index}"  # one colour per configuration: solid train, dashed validation
        for ax, key in ((accuracy, "accuracy"), (loss, "loss")):
            ax.plot(epochs, [h[key] for h in history], marker="o", color=colour, label=f"{label} train")
            ax.plot(epochs, [h[f"val_{key}"] for h in history], marker="o", color=colour, linestyle="--", label=f"{label} val")
    for ax, name in ((accuracy, "accuracy"), (loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ceiling_args(plain: PlainArgs, steps_per_epoch) -> PlainArgs:
    """The ceiling measures a rate only: two epochs of a fixed length are enough."""
    steps = steps_per_epoch or CEILING_STEPS
    return dataclasses.replace(plain, epochs=2, steps_per_epoch=steps, patience=99, validation_records=None, probe_steps=0)


def hardware_ceiling(backend, copies: int, plain: PlainArgs) -> dict:
    """N plain trainings at once, each pinned to its own cores, with no communication at all.

    Their summed rate is the most N slots could reach on this host: shared caches, memory
    bandwidth or hyperthread siblings show up here, not as framework overhead.
    """

    def one(index: int) -> Callable[[], dict]:
        args = dataclasses.replace(plain, first_cpu=index * plain.threads)
        return lambda: backend.run("train_plain", args.to_argv(), plain=True)

    results = run_together(backend, "train_plain", [one(index) for index in range(copies)])
    rates = [r["steady_images_per_second"] for r in results]
    return {
        "model": f"{copies} independent tf-keras copies, {plain.threads} thread(s) each",
        "copies": copies,
        "steady_images_per_second": round(sum(rates), 1),
        "per_copy_images_per_second": rates,
        "test_accuracy": results[0]["test_accuracy"],
        "test_loss": results[0]["test_loss"],
        "train_seconds": max(r["train_seconds"] for r in results),
        "epochs_run": results[0]["epochs_run"],
    }


@task(
    default=True,
    help={
        "slots": "comma-separated slot counts, e.g. 1,2,4 (default bench.slots)",
        "epochs": "most epochs per configuration",
        "recipe": "paper, scaled or tuned",
        "cores_per_slot": "executor cores and TensorFlow threads per slot",
        "steps_per_epoch": "default: a full pass over the training set",
        "validation_records": "test records validated after each epoch (default: all; the final test uses all)",
        "baselines": "comma-separated: plain (tf-keras, no Spark), ceiling (N plain copies at once, no "
        "communication: the host's own limit), mllib (Spark MLlib MLP); '' for none",
        "mllib_iterations": "MLlib's maxIter",
        "out": "results folder",
        "repeats": "interleaved rounds (every configuration once per round); the report gives each ratio's median and "
        "range over them (default bench.repeats)",
        "batch_per_worker": "per-worker batch (default train.batch_per_worker; the study's protocol is 16, the tuned "
        "recipe was measured at 64)",
        "gradient_dtype": "float32 or bfloat16: the dtype the workers' gradients are summed in (default train.gradient_dtype)",
        "accuracy_gate": f"check that distribution costs no accuracy: full epochs, at least {MIN_EPOCHS} (default), no "
        f"baselines; N seeds (--repeats N, at least {MIN_SEEDS} by default), each slot count trained with each; PASS "
        f"when the mean per-seed difference from 1 slot, +/- twice its standard error, lies within {TOLERANCE_PP} pp, FAIL "
        "when beyond, else not settled; exit 1 unless PASS",
        "seed": "the training seed of every run (default the job's); with --accuracy-gate --repeats N, the first of "
        "N consecutive seeds, so a later gate can add seeds to an earlier one's",
        "profile": "also keep a TensorFlow profiler trace of each configuration's probe steps (bench.probe_steps) under "
        "<out>/profile, for TensorBoard's profile plugin",
        "embedded": "Spark's embedded local-cluster and local storage (see stage)",
        **EXISTING_HELP,
        "project": "cluster name prefix",
    },
)
def bench(
    c,
    slots=None,
    epochs=None,
    recipe=None,
    cores_per_slot=None,
    steps_per_epoch=None,
    validation_records=None,
    baselines="plain,ceiling,mllib",
    mllib_iterations=30,
    out=None,
    repeats=None,
    batch_per_worker=None,
    gradient_dtype=None,
    accuracy_gate=False,
    seed=None,
    profile=False,
    embedded=False,
    master=None,
    hdfs=None,
    project=None,
):
    """Train with each slot count on the same data and seed; report speed-up, accuracy, baselines, resources."""
    counts = slot_counts(slots, "--slots") if slots else kit_settings(c).bench.slot_counts
    epochs, cores_per_slot = whole(epochs, "--epochs"), whole(cores_per_slot, "--cores-per-slot")
    steps_per_epoch, repeats = whole(steps_per_epoch, "--steps-per-epoch"), whole(repeats, "--repeats")
    validation_records, seed = whole(validation_records, "--validation-records"), whole(seed, "--seed", low=0)
    mllib_iterations, batch_per_worker = (
        whole(mllib_iterations, "--mllib-iterations"),
        whole(batch_per_worker, "--batch-per-worker"),
    )
    baseline_names(baselines)
    one_of(recipe, "--recipe", RECIPES)
    one_of(gradient_dtype, "--gradient-dtype", GRADIENT_DTYPES)
    if accuracy_gate:
        if 1 not in counts or max(counts) < 2:
            raise Exit(f"kit: --accuracy-gate compares 1 slot with more: --slots {slots} lacks one of them", code=USAGE_ERROR)
        if steps_per_epoch:
            raise Exit("kit: --accuracy-gate trains on full epochs: leave out --steps-per-epoch")
        if epochs is not None and int(epochs) < MIN_EPOCHS:
            raise Exit(
                f"kit: --accuracy-gate needs at least {MIN_EPOCHS} epochs (--epochs {epochs}): give more or leave it out"
            )
        epochs, baselines = epochs or MIN_EPOCHS, ""
    if profile and not kit_settings(c).bench.probe_steps:
        raise Exit("kit: --profile traces the probe's steps: set bench.probe_steps above 0", code=USAGE_ERROR)
    backend = open_backend(c, project, embedded, master, hdfs)
    ensure_staged(c, backend)
    return bench_with(
        c,
        backend,
        slots,
        epochs,
        recipe,
        cores_per_slot,
        steps_per_epoch,
        baselines,
        mllib_iterations,
        out,
        validation_records,
        repeats,
        gate=accuracy_gate,
        gradient_dtype=gradient_dtype,
        batch_per_worker=batch_per_worker,
        profile=profile,
        seed=seed,
    )


def bench_with(
    c,
    backend,
    slots=None,
    epochs=None,
    recipe=None,
    cores_per_slot=None,
    steps_per_epoch=None,
    baselines="plain,ceiling,mllib",
    mllib_iterations=30,
    out=None,
    validation_records=None,
    repeats=None,
    gate=False,
    gradient_dtype=None,
    batch_per_worker=None,
    profile=False,
    seed=None,
) -> dict:
    settings = kit_settings(c).bench
    counts = slot_counts(slots, "--slots") if slots else settings.slot_counts
    cores = int(cores_per_slot or settings.cores_per_slot)
    epochs = int(epochs or settings.epochs)
    recipe = recipe or kit_settings(c).train.recipe
    gradient_dtype = gradient_dtype or kit_settings(c).train.gradient_dtype
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out or Path(kit_settings(c).data.results_dir) / "bench" / stamp).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    available = backend.host_cores()
    warnings = [
        f"{n} slots x {cores} cores = {n * cores} cores exceed the host's {available}: the slots share "
        "cores, so speed-up is not a scaling measurement"
        for n in counts
        if n * cores > available
    ]
    for warning in warnings:
        print(f"kit: warning: {warning}", file=sys.stderr)
    # 0 or absent: a full pass, every test record
    run = {"epochs": epochs, "steps_per_epoch": steps_per_epoch or None, "validation_records": validation_records or None}
    train_settings = kit_settings(c).train
    batch = batch_per_worker or train_settings.batch_per_worker
    train = TrainArgs(
        data=backend.data_url,
        runs=backend.runs_url,
        cores_per_slot=cores,
        recipe=recipe,
        batch_per_worker=batch,
        gradient_dtype=gradient_dtype,
        attempts=train_settings.attempts,
        recovery_wait=train_settings.recovery_wait,
        probe_steps=settings.probe_steps,
        **run,
    )
    first_seed = JOB_DEFAULTS["seed"] if seed is None else int(seed)
    plain_args = PlainArgs(
        data=backend.data_url, threads=cores, batch=batch, probe_steps=settings.probe_steps, seed=first_seed, **run
    )
    traces = out_dir / "profile" if profile else None

    def trace_folder(name: str) -> dict:
        """backend.run's arguments that bring a configuration's trace to <out>/profile/<name>."""
        return {"out": traces / name} if traces else {}

    wanted = baseline_names(baselines)
    if repeats is None:
        repeats = max(settings.repeats, MIN_SEEDS) if gate else settings.repeats
    repeats = int(repeats)
    if repeats < 1:
        raise Exit(f"kit: --repeats {repeats}: give 1 or more rounds")
    widest = max(counts, default=1)
    measured: dict = {}  # configuration (slot count, "plain", "ceiling") -> its run in each round
    rounds = []
    stopped: JobInterrupted | None = None  # stopped after a complete round: reported, then re-raised
    # A 1-slot run leaves the host's other cores idle, and accuracy does not depend on speed: the
    # gate trains two seeds' 1-slot runs at once, each pinned to cores of its own.
    side_by_side = gate and 1 in counts and widest > 1 and 2 * cores <= available
    if side_by_side:
        warnings.append(
            "the gate trained its seeds' 1-slot runs two at a time, side by side on cores of their own: "
            "their rates are not a bench measurement, and no speed-up or ratio is made of them"
        )

    def tag_of(index: int) -> str:
        return f"-r{index + 1}" if repeats > 1 else ""

    def train_args(count: int, index: int, first_core: int = 0) -> TrainArgs:
        return dataclasses.replace(
            train,
            slots=count,
            run_id=f"bench-{stamp}-{count}x{cores}{tag_of(index)}",
            seed=first_seed + index if gate else first_seed,  # the gate's rounds are seeds: every slot count trains with each
            profile="{out}" if traces else None,
            first_core=first_core,
        )

    def measured_run(count: int, result: dict, sampler, steal: StealMeter) -> dict:
        return {
            **result,
            "label": f"{count} slot(s) x {cores} core(s)",
            "resources": sampler.summary(),
            "host_steal_percent": steal.percent,
        }

    def one_slot_side_by_side(indexes: list[int]) -> list[dict]:
        seeds = [train_args(1, index).seed for index in indexes]
        print(
            f"kit: bench: 1 slot(s) x {cores} core(s), rounds {indexes[0] + 1} and {indexes[1] + 1} of {repeats} side by "
            f"side (seeds {seeds[0]} and {seeds[1]})",
            file=sys.stderr,
            flush=True,
        )

        def one(position: int, index: int) -> Callable[[], dict]:
            args = train_args(1, index, first_core=position * cores)
            folder = trace_folder(f"1x{cores}{tag_of(index)}")
            return lambda: backend.run("train_cnn", args.to_argv(), label=f"seed {args.seed}", **folder)

        with backend.sampler() as sampler, StealMeter() as steal:
            results = run_together(backend, "train_cnn", [one(position, index) for position, index in enumerate(indexes)])
        return [{**measured_run(1, result, sampler, steal), "side_by_side": True} for result in results]

    try:
        for index in range(repeats):
            # every configuration once per round, so a ratio compares runs minutes apart
            suffix = f" (round {index + 1} of {repeats})" if repeats > 1 else ""
            for count in counts:
                if count == 1 and side_by_side and len(measured.get(1, [])) > index:
                    continue  # trained beside the previous round's
                if count == 1 and side_by_side and index + 1 < repeats:
                    measured.setdefault(1, []).extend(one_slot_side_by_side([index, index + 1]))
                    continue
                print(f"kit: bench: {count} slot(s) x {cores} core(s){suffix}", file=sys.stderr, flush=True)
                with backend.sampler() as sampler, StealMeter() as steal:
                    args = train_args(count, index)
                    result = backend.run("train_cnn", args.to_argv(), **trace_folder(f"{count}x{cores}{tag_of(index)}"))
                measured.setdefault(count, []).append(measured_run(count, result, sampler, steal))
            if "plain" in wanted:
                print(f"kit: bench: baseline plain tf-keras on {cores} core(s){suffix}", file=sys.stderr, flush=True)
                measured.setdefault("plain", []).append(
                    with_steal(
                        lambda: backend.run(
                            "train_plain",
                            dataclasses.replace(plain_args, profile="{out}" if traces else None).to_argv(),
                            plain=True,
                            cpus=cores,
                            **trace_folder(f"plain{tag_of(index)}"),
                        )
                    )
                )
            if "ceiling" in wanted and widest > 1 and widest * cores <= available:
                label = f"baseline ceiling, {widest} independent plain copies at once{suffix}"
                print(f"kit: bench: {label}", file=sys.stderr, flush=True)
                measured.setdefault("ceiling", []).append(
                    with_steal(lambda: hardware_ceiling(backend, widest, ceiling_args(plain_args, steps_per_epoch)))
                )
            rounds.append({key: runs[index]["steady_images_per_second"] for key, runs in measured.items()})
    except JobInterrupted as interrupted:
        if not rounds:
            done = ", ".join(f"{key}: {len(runs)} run(s)" for key, runs in measured.items()) or "none"
            raise interrupted.keeping(
                f"the bench wrote no report (configurations measured: {done}, no round complete); their run "
                f"folders stay under {backend.runs_url}; './kit bench' starts over",
            ) from None
        # the complete rounds stand on their own (a gate's rounds are seeds), the unfinished one is dropped
        stopped = interrupted
        measured = {key: runs[: len(rounds)] for key, runs in measured.items()}
        wanted = [name for name in wanted if name != "mllib"]
        warnings.append(
            f"{interrupted.reason} in round {len(rounds) + 1} of {repeats}: the figures cover the {len(rounds)} "
            "complete round(s)"
        )
    # the table shows each configuration's median run; the ratios come from the rounds
    configurations = [
        {
            **median_run(measured[count]),
            "rates": [r["steady_images_per_second"] for r in measured[count]],
            "test_accuracies": [r["test_accuracy"] for r in measured[count]],  # by round: by seed in the gate
            "seeds": [r.get("seed") for r in measured[count]],
            "histories": [r["history"] for r in measured[count]] if gate else None,  # every seed's curve
        }
        for count in counts
    ]
    # side by side, a 1-slot rate is not one slot's: no speed-up or ratio is made of it
    base = None if side_by_side else next((row for row in configurations if row["slots"] == 1), None)
    for row in configurations:
        if base and base["steady_images_per_second"]:
            row["speed_up"] = round(row["steady_images_per_second"] / base["steady_images_per_second"], 3)
            row["efficiency"] = round(row["speed_up"] / row["slots"], 3)
    baseline_results = {name: median_run(measured[name]) for name in ("plain", "ceiling") if name in measured}
    if "mllib" in wanted:
        print("kit: bench: baseline Spark MLlib MLP", file=sys.stderr, flush=True)
        baseline_results["mllib"] = backend.run(
            "train_mllib", MllibArgs(data=backend.data_url, max_iter=mllib_iterations).to_argv()
        )
    ratios = {} if side_by_side else ratio_table(rounds)
    for label, percent in steal_readings(configurations, baseline_results):
        warning = steal_warning(label, percent)
        if warning:
            warnings.append(warning)
            print(f"kit: warning: {warning}", file=sys.stderr)
    synthetic = synthetic_spec(dataset_dir(c)) or False  # how the local stand-in was generated
    if gate and synthetic and synthetic.get("difficulty", "easy") == "easy":
        warnings.append(
            "the accuracy gate runs on the easy synthetic stand-in, which saturates: it cannot show an accuracy "
            "loss ('./kit data.fetch --synthetic --difficulty hard --force', then stage again)"
        )
    results = {
        "created": stamp,
        "backend": backend.name,
        "host_cores": available,
        "recipe": recipe,
        "gradient_dtype": gradient_dtype,
        "batch_per_worker": batch,
        "epochs": epochs,
        "synthetic": synthetic,
        "repeats": len(rounds),
        "repeats_asked": repeats,  # more when the bench was stopped: only complete rounds count
        "rounds": rounds,
        "ratios": ratios,
        "configurations": configurations,
        "baselines": baseline_results,
        "warnings": warnings,
        "kit_vs_plain": ratios.get("kit_vs_plain", {}).get("median"),
        "widest_vs_ceiling": ratios.get("widest_vs_ceiling", {}).get("median"),
        "accuracy_gate": accuracy_gate(configurations) if gate else None,
        "profile": str(traces) if traces else None,
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    markdown = report_markdown(results)
    (out_dir / "report.md").write_text(markdown)
    draw_curves(results, out_dir / "curves.png")
    print("\n" + markdown)
    print(f"results: {out_dir / 'results.json'}\nreport: {out_dir / 'report.md'}\ncurves: {out_dir / 'curves.png'}")
    if draw_step_phases(results, out_dir / "step_phases.png"):
        print(f"step phases: {out_dir / 'step_phases.png'}")
    if traces:
        print(f"profiler traces: {traces} (pip install tensorboard tensorboard-plugin-profile; tensorboard --logdir {traces})")
    if stopped:
        raise stopped.keeping(
            f"the report above covers the {len(rounds)} complete round(s) of {repeats}: {out_dir / 'report.md'}; "
            f"the unfinished round's run folders stay under {backend.runs_url}"
        )
    if gate:
        exit_unless_passed(results["accuracy_gate"])
    return {**results, "out_dir": str(out_dir)}


def exit_unless_passed(gate: dict) -> None:
    """The gate's verdict as the exit status: 1 unless PASS, with the figures and a next step."""
    if gate["verdict"] == "FAIL":
        raise Exit(f"kit: {gate_line(gate)}: distribution cost accuracy (figures above)", code=1)
    if gate["verdict"] != "PASS":
        raise Exit(
            f"kit: {gate_line(gate)}: the seeds differ too much to tell; run more of them (--accuracy-gate "
            "--repeats N --seed S trains S, S+1, ...) and combine the runs: ./kit bench.gate --runs A,B",
            code=1,
        )


@task(
    help={
        "runs": "comma-separated folders (or their results.json) of earlier './kit bench --accuracy-gate' runs: the "
        "same protocol, different seeds",
        "out": "folder for the combined gate's results.json and report.md (default <results>/bench/<stamp>-gate)",
    }
)
def gate(c, runs, out=None):
    """One accuracy gate over the seeds of several --accuracy-gate benches; exit 1 unless PASS."""
    loaded: dict = {}
    for name in (part.strip() for part in runs.split(",") if part.strip()):
        if name in loaded:
            raise Exit(f"kit: --runs: {name} is given twice: give each run once", code=USAGE_ERROR)
        path = Path(name) / "results.json" if Path(name).is_dir() else Path(name)
        try:
            loaded[name] = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise Exit(f"kit: --runs: cannot read {path} ({error}): give bench folders", code=USAGE_ERROR) from None
    try:
        combined = combined_gate(loaded, JOB_DEFAULTS["seed"])
    except ValueError as error:
        raise Exit(f"kit: --runs: {error}", code=USAGE_ERROR) from None
    out_dir = Path(out or Path(kit_settings(c).data.results_dir) / "bench" / f"{time.strftime('%Y%m%d-%H%M%S')}-gate")
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = f"Combined from {', '.join(loaded)}.\n\n**{gate_line(combined)}**\n\n" + epoch_markdown(combined)
    (out_dir / "results.json").write_text(json.dumps({"combined_from": list(loaded), "accuracy_gate": combined}, indent=2))
    (out_dir / "report.md").write_text(markdown)
    print("\n" + markdown + f"\nresults: {out_dir / 'results.json'}\nreport: {out_dir / 'report.md'}")
    exit_unless_passed(combined)
