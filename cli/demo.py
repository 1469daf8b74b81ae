"""demo: the whole experiment in one command, on the containerised cluster or the embedded fallback."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from invoke import Exit, task

from cli.bench import bench_with
from cli.data import default_dataset
from cli.flags import whole
from cli.hostcpu import StealMeter
from cli.pipeline import eda_with, stage_with
from cli.progress import say
from cli.settings import kit_settings


class PhaseClock:
    """Wall time per phase, and the CPU time the hypervisor stole meanwhile, printed at the end and
    kept next to the report: a slow phase on a shared VM is then not mistaken for a slow kit."""

    def __init__(self, meter=StealMeter):
        self.seconds: dict[str, float] = {}
        self.steal: dict[str, float | None] = {}
        self.meter = meter

    @contextlib.contextmanager
    def __call__(self, name: str):
        say(f"demo: {name} ...")
        started = time.monotonic()
        with self.meter() as steal:
            try:
                yield
            finally:
                self.seconds[name] = round(time.monotonic() - started, 1)
        self.steal[name] = steal.percent
        say(f"demo: {name} done in {self.seconds[name]:.1f}s" + (f" (CPU steal {steal.percent}%)" if steal.percent else ""))

    def table(self) -> str:
        rows = "".join(f"| {name} | {seconds:.1f} | {self._steal_cell(name)} |\n" for name, seconds in self.seconds.items())
        return f"| phase | seconds | CPU steal % |\n|---|---|---|\n{rows}| total | {sum(self.seconds.values()):.1f} | |\n"

    def _steal_cell(self, name: str) -> str:
        percent = self.steal.get(name)
        return "-" if percent is None else f"{percent}"


def choose_backend(c, project, embedded: bool, phases: PhaseClock):
    from cli.cluster import bring_up, open_cluster
    from cli.engine import ensure_engine
    from cli.execution import ClusterBackend, embedded_backend
    from cli.images import ensure_images

    if not embedded:
        try:
            with phases("docker engine"):
                ensure_engine()
        except Exit as error:
            reason = str(error.message or error).strip().splitlines()[0]
            say(
                f"demo: no Docker engine ({reason}); running the same jobs on Spark's embedded "
                "local-cluster[2,2,2048] with local storage instead"
            )
            embedded = True
    if embedded:
        with phases("embedded Spark"):
            return embedded_backend(c)
    cluster = open_cluster(c, project)
    with phases("images"):
        ensure_images(c, cluster.source)
    with phases("cluster up"):
        bring_up(c, cluster)
    return ClusterBackend(c, project, cluster=cluster)


@task(
    help={
        "full": "the reference protocol: up to 50 epochs, full passes, early stopping, every baseline",
        "embedded": "skip Docker: Spark's embedded local-cluster[2,2,2048] and local storage",
        "from_": "a cifar-10-binary.tar.gz on disk (otherwise downloaded when reachable, else synthetic)",
        "epochs": "epochs per configuration (default demo.epochs, or train.epochs with --full)",
        "steps_per_epoch": "default demo.steps_per_epoch; --full uses full passes",
        "down": "tear the cluster down at the end (the default leaves it running with its UIs)",
        "project": "cluster name prefix",
    }
)
def demo(c, full=False, embedded=False, from_=None, epochs=None, steps_per_epoch=None, down=False, project=None):
    """The whole experiment: images, cluster, data, staging, EDA, 1- vs 2-slot bench with baselines, report."""
    epochs, steps_per_epoch = whole(epochs, "--epochs"), whole(steps_per_epoch, "--steps-per-epoch")
    settings = kit_settings(c).demo
    phases = PhaseClock()
    started = time.monotonic()
    backend = choose_backend(c, project, embedded, phases)
    with phases("data"):
        folder = default_dataset(c, from_)
    with phases("stage"):
        stage_with(c, backend, folder)
    with phases("eda"):
        eda_with(c, backend, fraction=settings.eda_fraction)
    with phases("bench"):
        results = bench_with(
            c,
            backend,
            epochs=epochs or (kit_settings(c).train.epochs if full else settings.epochs),
            steps_per_epoch=None if full else (steps_per_epoch or settings.steps_per_epoch or None),
            baselines=settings.full_baselines if full else settings.baselines,
            validation_records=None if full else settings.validation_records,
            out=Path(kit_settings(c).data.results_dir).resolve() / "demo" / backend.name,
        )
    out_dir = Path(results["out_dir"])
    (out_dir / "phases.json").write_text(
        json.dumps(
            {
                "backend": backend.name,
                "full": full,
                "phases": phases.seconds,
                "cpu_steal_percent": phases.steal,
                "total_seconds": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
    )
    print(f"\nDemo phases ({backend.name}):\n{phases.table()}")
    print(
        f"figures: {out_dir / 'curves.png'}, {Path(kit_settings(c).data.results_dir).resolve() / 'eda'}\n"
        f"report: {out_dir / 'report.md'}"
    )
    if backend.name == "cluster":
        finish_cluster(c, project, backend, down)


def finish_cluster(c, project, backend, down: bool) -> None:
    from cli.cluster import print_status

    if down:
        backend.cluster.down(say=say)
        say("demo: cluster removed (HDFS volumes kept; './kit down --volumes' removes them too)")
        return
    print("\nThe cluster keeps running; its UIs (bound to 127.0.0.1):")
    print_status(backend.cluster.status())
    print("'./kit down' stops it; './kit train', './kit bench' and './kit eda' run on it again.")
