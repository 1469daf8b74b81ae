"""A tiny `./kit bench` against the test cluster writes results.json, report.md and curves.png; a
Ctrl-C while the ceiling baseline's copies run stops them both; two 1-slot trainings run side by
side (as the accuracy gate runs its seeds) each get an executor and a core of their own."""

from __future__ import annotations

import _thread
import os
import threading
import time

import pytest

from cli.bench import hardware_ceiling
from cli.execution import ClusterBackend, JobInterrupted, run_together
from cluster.lifecycle import STOP_SECONDS, ClusterError
from jobs.train_cnn import TrainArgs
from jobs.train_plain import PlainArgs
from tests.integration.support import kit_context


def test_a_tiny_bench_writes_its_results_report_and_curves(bench_runs):
    results, out = bench_runs["results"], bench_runs["out"]
    assert [row["slots"] for row in results["configurations"]] == [1, 2]
    assert results["configurations"][0]["speed_up"] == 1.0
    assert results["configurations"][1]["global_batch"] == 32
    assert results["baselines"]["plain"]["threads"] == 2 and results["kit_vs_plain"] > 0
    assert any("2 slots x 2 cores = 4 cores exceed" in w for w in results["warnings"]) == (os.cpu_count() < 4)
    worker = "spark-worker"
    assert all(row["resources"][worker]["peak_memory_mb"] > 100 for row in results["configurations"])
    report = (out / "report.md").read_text()
    assert "| 2 slot(s) x 2 core(s) |" in report and "baseline plain" in report
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_configuration_is_probed_phase_by_phase_on_the_cluster(bench_runs):
    results, out = bench_runs["results"], bench_runs["out"]
    probes = [row["step_phases"] for row in results["configurations"]] + [results["baselines"]["plain"]["step_phases"]]
    assert [p["workers"] for p in probes] == [1, 2, 1] and all(p["probe_steps"] == 3 for p in probes)
    # the kit's 2-slot step runs the gradients' all-reduce and nothing else across workers; plain runs none
    assert probes[1]["collectives_per_step"] == 1 and probes[2]["collectives_per_step"] == 0
    assert all(p["step"] > 0 and p["compute"] > 0 for p in probes)
    assert "Where a training step's time goes" in (out / "report.md").read_text()
    assert (out / "step_phases.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_configuration_keeps_a_profiler_trace_tensorboard_can_open(bench_runs):
    results, traces = bench_runs["results"], bench_runs["out"] / "profile"
    assert results["profile"] == str(traces)
    for name in ("1x2-r1", "2x2-r1", "plain-r1", "1x2-r2", "2x2-r2", "plain-r2"):
        # TensorBoard's profile plugin reads <logdir>/plugins/profile/<session>/<host>.xplane.pb
        found = list((traces / name / "plugins" / "profile").glob("*/*.xplane.pb"))
        assert len(found) == 1 and found[0].stat().st_size > 10_000, (name, found)


def test_repeated_rounds_interleave_the_configurations_and_report_each_ratios_range(bench_runs):
    results, output = bench_runs["results"], bench_runs["output"]
    assert results["repeats"] == 2 and len(results["rounds"]) == 2
    assert all(set(rates) == {1, 2, "plain"} or set(rates) == {"1", "2", "plain"} for rates in results["rounds"])
    order = [line.split("kit: bench: ", 1)[1] for line in output.splitlines() if line.startswith("kit: bench: ")]
    assert order == [
        "1 slot(s) x 2 core(s) (round 1 of 2)",
        "2 slot(s) x 2 core(s) (round 1 of 2)",
        "baseline plain tf-keras on 2 core(s) (round 1 of 2)",
        "1 slot(s) x 2 core(s) (round 2 of 2)",
        "2 slot(s) x 2 core(s) (round 2 of 2)",
        "baseline plain tf-keras on 2 core(s) (round 2 of 2)",
    ]
    assert all(len(row["rates"]) == 2 for row in results["configurations"])
    efficiency = results["ratios"]["efficiency"]
    assert efficiency["rounds"] == 2 and efficiency["low"] <= efficiency["median"] <= efficiency["high"]
    assert efficiency["verdict"].startswith("not settled (2 round(s)")
    assert "Ratios over 2 interleaved round(s)" in (bench_runs["out"] / "report.md").read_text()


def test_ctrl_c_while_the_ceilings_copies_run_stops_both_and_leaves_no_client_behind(cluster, staged, target, ctrl_c):
    # Both copies are streamed in threads of their own, and only the main thread hears Ctrl-C: the
    # task must stop their containers itself, or they train on after it has ended.
    backend = ClusterBackend(kit_context(), cluster.shape.project, cluster=cluster)
    plain = PlainArgs(data=target, epochs=50, batch=16, threads=1, patience=50)  # far longer than the test waits
    copies: list[str] = []

    def interrupt_once_both_run() -> None:
        deadline = time.monotonic() + 120
        while len(copies) < 2 and time.monotonic() < deadline:
            copies[:] = [container.name for container in list(cluster.live.containers)]
            time.sleep(0.5)  # a poll of the copies' start, bounded by the deadline
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_both_run, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(JobInterrupted) as stopped:
        hardware_ceiling(backend, 2, plain)
    assert stopped.value.code == 130 and "jobs/train_plain.py interrupted" in stopped.value.message
    assert len(copies) == 2, "the two copies never ran at once"
    assert time.monotonic() - started < 120 + STOP_SECONDS + 30
    left = [c.name for c in cluster.client.containers.list(all=True) if c.name in copies]
    assert left == [] and not cluster.live.containers


def test_two_one_slot_trainings_side_by_side_each_get_an_executor_and_a_core_of_their_own(cluster, staged, target):
    # how the accuracy gate trains two seeds' 1-slot runs at once on a two-core host
    backend = ClusterBackend(kit_context(), cluster.shape.project, cluster=cluster)
    stamp = time.strftime("%H%M%S")

    def one(first_core: int):
        args = TrainArgs(
            data=target,
            runs=cluster.shape.default_fs + "/runs",
            run_id=f"side-by-side-{stamp}-{first_core}",
            slots=1,
            cores_per_slot=1,
            epochs=2,
            steps_per_epoch=5,
            batch_per_worker=16,
            recipe="paper",
            gradient_dtype="float32",
            attempts=1,
            recovery_wait=20.0,
            first_core=first_core,
        )
        return lambda: backend.run("train_cnn", args.to_argv(), label=f"core {first_core}")

    seen: list[list[int]] = []  # the cores of each training application running, at each look
    finished = threading.Event()

    def watch_the_master() -> None:
        while not finished.wait(1.0):
            try:
                apps = cluster.fetch_json("spark-master", "http://localhost:8080/json/")["activeapps"]
            except ClusterError:  # a slow answer on a busy host: the next look counts
                continue
            seen.append([app["cores"] for app in apps if app["name"] == "train-cnn-1x1"])

    watcher = threading.Thread(target=watch_the_master, daemon=True)
    watcher.start()
    try:
        results = run_together(backend, "train_cnn", [one(0), one(1)])
    finally:
        finished.set()
        watcher.join(timeout=30)
    assert [result["workers"][0]["cpus"] for result in results] == [[0], [1]]
    assert [1, 1] in seen, f"never both at once, each on one core: {seen}"  # spark.cores.max: neither takes all
    # one seed (the default) for both: training beside another run changes no figure of its own
    losses = [[(row["loss"], row["val_loss"]) for row in result["history"]] + [result["test_loss"]] for result in results]
    assert losses[0] == losses[1], losses
