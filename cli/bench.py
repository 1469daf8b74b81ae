"""bench: 1 slot against 2 (or any list) on the same data and seed, with baselines and resource use."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from invoke import Exit, task

from cli.hostcpu import StealMeter, steal_warning
from cli.pipeline import EXISTING_HELP, ensure_staged, retry_args
from cluster.lifecycle import PROJECT_LABEL

CEILING_STEPS = 1000


class ResourceSampler:
    """CPU % and memory of every container of the project, from the Docker API's stats stream."""

    def __init__(self, client, project: str):
        self.client, self.project = client, project
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.watched: set[str] = set()

    def _follow(self, container) -> None:
        try:
            for stats in container.stats(stream=True, decode=True):
                if self.stop.is_set():
                    return
                cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
                cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
                system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
                cpus = cpu.get("online_cpus") or 1
                percent = 100.0 * cpu_delta / system_delta * cpus if system_delta > 0 and cpu_delta >= 0 else 0.0
                memory = stats.get("memory_stats", {}).get("usage", 0) / 2**20
                self.samples.setdefault(container.name, []).append((percent, memory))
        except Exception:  # the container went away (a finished client): its samples stay
            return

    def _discover(self) -> None:
        while not self.stop.wait(2):
            for container in self.client.containers.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
                if container.name not in self.watched:
                    self.watched.add(container.name)
                    thread = threading.Thread(target=self._follow, args=(container,), daemon=True)
                    thread.start()
                    self.threads.append(thread)

    def __enter__(self):
        threading.Thread(target=self._discover, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()

    def summary(self) -> dict:
        out = {}
        for name, rows in sorted(self.samples.items()):
            busy = [cpu for cpu, _ in rows[1:]] or [0.0]
            out[name.removeprefix(f"{self.project}-")] = {
                "mean_cpu_percent": round(sum(busy) / len(busy), 1), "peak_memory_mb": round(max(m for _, m in rows), 1),
                "samples": len(rows)}
        return out


def epoch_seconds(history: list[dict]) -> str:
    """Mean seconds per epoch after the first (total / of which training), as the study reports them."""
    rows = history[1:] or history
    if not rows:
        return "-"
    return (f"{sum(r['seconds'] for r in rows) / len(rows):.1f} / "
            f"{sum(r['train_seconds'] for r in rows) / len(rows):.1f}")


def loss_cell(row: dict) -> str:
    """MLlib's MLP reports no test loss: a dash, not nan."""
    return f"{row['test_loss']:.4f}" if row.get("test_loss") is not None else "-"


def steal_readings(configurations: list[dict], baselines: dict) -> list[tuple[str, float | None]]:
    """(label, CPU steal %) of every measurement, in report order; None where it was not metered."""
    return [(row["label"], row.get("host_steal_percent")) for row in configurations] + \
           [(f"baseline {name}", row.get("host_steal_percent")) for name, row in baselines.items()]


def with_steal(run) -> dict:
    """run()'s result with the CPU steal measured while it ran."""
    with StealMeter() as steal:
        result = run()
    return {**result, "host_steal_percent": steal.percent}


def report_markdown(results: dict) -> str:
    lines = ["| configuration | test accuracy | test loss | training time (s) | epochs | s per epoch (all / training) "
             "| images/s (after epoch 1) | speed-up | scaling efficiency | start-up (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["configurations"]:
        lines.append(f"| {row['label']} | {row['test_accuracy']:.4f} | {row['test_loss']:.4f} | {row['train_seconds']} "
                     f"| {row['epochs_run']} | {epoch_seconds(row['history'])} | {row['steady_images_per_second']} "
                     f"| {row.get('speed_up', '-')} | {row.get('efficiency', '-')} | {row.get('startup_seconds', '-')} |")
    for name, row in results["baselines"].items():
        rate = row.get("steady_images_per_second", "-")
        lines.append(f"| baseline {name} ({row.get('model', 'tf-keras, ' + str(row.get('threads')) + ' thread(s)')}) "
                     f"| {row['test_accuracy']:.4f} | {loss_cell(row)} | {row['train_seconds']} "
                     f"| {row.get('epochs_run', '-')} | {epoch_seconds(row.get('history', []))} | {rate} | - | - | - |")
    text = "\n".join(lines) + "\n"
    if results.get("kit_vs_plain") is not None:
        text += f"\nKit 1-slot rate / plain tf-keras rate on the same cores: {results['kit_vs_plain']:.3f}\n"
    ceiling = results["baselines"].get("ceiling")
    if ceiling:
        widest = max(results["configurations"], key=lambda row: row["slots"])
        text += (f"\nHost ceiling: {ceiling['copies']} independent copies reach {ceiling['steady_images_per_second']} images/s "
                 f"together ({ceiling['per_copy_images_per_second']} each). The {widest['label']} run reaches "
                 f"{widest['steady_images_per_second'] / ceiling['steady_images_per_second']:.3f} of it.\n")
    steal = steal_readings(results["configurations"], results["baselines"])
    if any(percent is not None for _, percent in steal):
        text += ("\nCPU steal (time the hypervisor took from this machine) during each measurement: "
                 + ", ".join(f"{label} {percent}%" for label, percent in steal if percent is not None) + "\n")
    text += "\nMemory per executor (peak): Python training process RSS and executor JVM heap + off-heap, MB:\n\n"
    text += "| configuration | worker | cores pinned | Python RSS | executor JVMs |\n|---|---|---|---|---|\n"
    for row in results["configurations"]:
        jvms = ", ".join(f"{key}: {value}" for key, value in sorted(row.get("executor_jvm_peak_mb", {}).items()))
        for worker in row.get("workers", []):
            text += f"| {row['label']} | {worker['worker']} | {worker['cpus']} | {worker['peak_rss_mb']} | {jvms} |\n"
    text += "\nResource use (mean CPU %, peak memory MB) per container, per configuration:\n\n"
    text += "| configuration | container | mean CPU % | peak memory MB |\n|---|---|---|---|\n"
    for row in results["configurations"]:
        for name, usage in row["resources"].items():
            text += f"| {row['label']} | {name} | {usage['mean_cpu_percent']} | {usage['peak_memory_mb']} |\n"
    for warning in results["warnings"]:
        text += f"\n> warning: {warning}\n"
    if results.get("synthetic"):
        text += "\n> The data is the synthetic stand-in: accuracies are not comparable with published CIFAR-10 results.\n"
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
            ax.plot(epochs, [h[f"val_{key}"] for h in history], marker="o", color=colour, linestyle="--",
                    label=f"{label} val")
    for ax, name in ((accuracy, "accuracy"), (loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ceiling_steps(steps_per_epoch) -> list[str]:
    """The ceiling measures a rate only: two epochs of a fixed length are enough."""
    return ["--epochs", "2", "--steps-per-epoch", str(steps_per_epoch or CEILING_STEPS), "--patience", "99"]


def hardware_ceiling(c, backend, copies: int, cores: int, common: list[str]) -> dict:
    """N plain trainings at once, each pinned to its own cores, with no communication at all.

    Their summed rate is the most N slots could reach on this host: shared caches, memory
    bandwidth or hyperthread siblings show up here, not as framework overhead.
    """
    results: list[dict | None] = [None] * copies

    def one(index: int) -> None:
        results[index] = backend.run("train_plain", [
            "--data", backend.data_url, "--threads", str(cores), "--first-cpu", str(index * cores),
            "--batch", str(c.config.train.batch_per_worker), *common], plain=True)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if any(r is None for r in results):
        raise Exit("kit: a copy of the ceiling baseline failed; its messages are above")
    rates = [r["steady_images_per_second"] for r in results]
    return {"model": f"{copies} independent tf-keras copies, {cores} thread(s) each", "copies": copies,
            "steady_images_per_second": round(sum(rates), 1), "per_copy_images_per_second": rates,
            "test_accuracy": results[0]["test_accuracy"], "test_loss": results[0]["test_loss"],
            "train_seconds": max(r["train_seconds"] for r in results), "epochs_run": results[0]["epochs_run"]}


@task(default=True, help={
    "slots": "comma-separated slot counts, e.g. 1,2,4 (default bench.slots)", "epochs": "most epochs per configuration",
    "recipe": "paper or tuned", "cores_per_slot": "executor cores and TensorFlow threads per slot",
    "steps_per_epoch": "default: a full pass over the training set",
    "validation_records": "test records validated after each epoch (default: all; the final test uses all)",
    "baselines": "comma-separated: plain (tf-keras, no Spark), ceiling (N plain copies at once, no "
                 "communication: the host's own limit), mllib (Spark MLlib MLP); '' for none",
    "mllib_iterations": "MLlib's maxIter", "out": "results folder",
    "embedded": "Spark's embedded local-cluster and local storage (see stage)", **EXISTING_HELP,
    "project": "cluster name prefix"})
def bench(c, slots=None, epochs=None, recipe=None, cores_per_slot=None, steps_per_epoch=None, validation_records=None,
          baselines="plain,ceiling,mllib", mllib_iterations=30, out=None, embedded=False, master=None, hdfs=None,
          project=None):
    """Train with each slot count on the same data and seed; report speed-up, accuracy, baselines, resources."""
    from cli.backends import open_backend

    backend = open_backend(c, project, embedded, master, hdfs)
    ensure_staged(c, backend)
    return bench_with(c, backend, slots, epochs, recipe, cores_per_slot, steps_per_epoch, baselines,
                      mllib_iterations, out, validation_records)


def bench_with(c, backend, slots=None, epochs=None, recipe=None, cores_per_slot=None, steps_per_epoch=None,
               baselines="plain,ceiling,mllib", mllib_iterations=30, out=None, validation_records=None) -> dict:
    settings = c.config.bench
    counts = [int(s) for s in str(slots or settings.slots).split(",") if s.strip()]
    cores = int(cores_per_slot or settings.cores_per_slot)
    epochs = int(epochs or settings.epochs)
    recipe = recipe or c.config.train.recipe
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out or Path(c.config.data.results_dir) / "bench" / stamp).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    available = backend.host_cores()
    warnings = [f"{n} slots x {cores} cores = {n * cores} cores exceed the host's {available}: the slots share "
                "cores, so speed-up is not a scaling measurement" for n in counts if n * cores > available]
    for warning in warnings:
        print(f"kit: warning: {warning}", file=sys.stderr)
    common = ["--epochs", str(epochs)] + (["--steps-per-epoch", str(steps_per_epoch)] if steps_per_epoch else []) + \
             (["--validation-records", str(validation_records)] if validation_records else [])
    configurations = []
    for count in counts:
        print(f"kit: bench: {count} slot(s) x {cores} core(s)", file=sys.stderr, flush=True)
        with backend.sampler() as sampler, StealMeter() as steal:
            result = backend.run("train_cnn", [
                "--data", backend.data_url, "--runs", backend.runs_url, "--slots", str(count),
                "--cores-per-slot", str(cores), "--recipe", recipe, "--run-id", f"bench-{stamp}-{count}x{cores}",
                "--batch-per-worker", str(c.config.train.batch_per_worker), *retry_args(c), *common])
        metrics = backend.read_json(result["run_dir"] + "/metrics.json")
        configurations.append({**metrics, "label": f"{count} slot(s) x {cores} core(s)", "run_dir": result["run_dir"],
                               "startup_seconds": result["startup_seconds"], "resources": sampler.summary(),
                               "host_steal_percent": steal.percent})
    base = next((row for row in configurations if row["slots"] == 1), None)
    for row in configurations:
        if base and base["steady_images_per_second"]:
            row["speed_up"] = round(row["steady_images_per_second"] / base["steady_images_per_second"], 3)
            row["efficiency"] = round(row["speed_up"] / row["slots"], 3)
    baseline_results = {}
    wanted = [b.strip() for b in str(baselines).split(",") if b.strip()]
    unknown = set(wanted) - {"plain", "ceiling", "mllib"}
    if unknown:
        raise Exit(f"kit: unknown baseline(s) {sorted(unknown)}: use plain, ceiling, mllib, or ''")
    if "plain" in wanted:
        print(f"kit: bench: baseline plain tf-keras on {cores} core(s)", file=sys.stderr, flush=True)
        baseline_results["plain"] = with_steal(lambda: backend.run("train_plain", [
            "--data", backend.data_url, "--threads", str(cores), "--batch", str(c.config.train.batch_per_worker),
            *common], plain=True, cpus=cores))
    widest = max(counts, default=1)
    if "ceiling" in wanted and widest > 1 and widest * cores <= available:
        print(f"kit: bench: baseline ceiling, {widest} independent plain copies at once", file=sys.stderr, flush=True)
        baseline_results["ceiling"] = with_steal(
            lambda: hardware_ceiling(c, backend, widest, cores, ceiling_steps(steps_per_epoch)))
    if "mllib" in wanted:
        print("kit: bench: baseline Spark MLlib MLP", file=sys.stderr, flush=True)
        baseline_results["mllib"] = backend.run("train_mllib", [
            "--data", backend.data_url, "--max-iter", str(mllib_iterations)])
    for label, percent in steal_readings(configurations, baseline_results):
        warning = steal_warning(label, percent)
        if warning:
            warnings.append(warning)
            print(f"kit: warning: {warning}", file=sys.stderr)
    synthetic = (Path(c.config.data.dir) / "cifar-10-batches-bin" / "SYNTHETIC.json").exists()
    results = {"created": stamp, "backend": backend.name, "host_cores": available, "recipe": recipe, "epochs": epochs,
               "synthetic": synthetic,
               "configurations": configurations, "baselines": baseline_results, "warnings": warnings,
               "kit_vs_plain": (round(base["steady_images_per_second"]
                                      / baseline_results["plain"]["steady_images_per_second"], 3)
                                if base and "plain" in baseline_results else None)}
    ceiling = baseline_results.get("ceiling")
    if ceiling and configurations:
        widest = max(configurations, key=lambda row: row["slots"])
        results["widest_vs_ceiling"] = round(widest["steady_images_per_second"] / ceiling["steady_images_per_second"], 3)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    markdown = report_markdown(results)
    (out_dir / "report.md").write_text(markdown)
    draw_curves(results, out_dir / "curves.png")
    print("\n" + markdown)
    print(f"results: {out_dir / 'results.json'}\nreport: {out_dir / 'report.md'}\ncurves: {out_dir / 'curves.png'}")
    return {**results, "out_dir": str(out_dir)}
