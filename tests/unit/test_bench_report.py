from cli.bench import report_markdown


def history(rates):
    return [{"epoch": i + 1, "seconds": 10.0, "train_seconds": 8.0, "images_per_second": r} for i, r in enumerate(rates)]


def configuration(slots, rate, **extra):
    return {
        "label": f"{slots} slot(s) x 1 core(s)",
        "slots": slots,
        "test_accuracy": 0.5,
        "test_loss": 1.2,
        "train_seconds": 30.0,
        "epochs_run": 2,
        "history": history([rate / 2, rate]),
        "steady_images_per_second": rate,
        "startup_seconds": 20.0,
        "resources": {},
        "workers": [{"worker": w, "host": f"spark-worker-{w + 1}", "cpus": [w], "peak_rss_mb": 900.0} for w in range(slots)],
        "executor_jvm_peak_mb": {"0": 300.0},
        **extra,
    }


def test_the_report_sets_the_widest_run_against_the_host_ceiling_and_lists_memory_per_worker():
    results = {
        "configurations": [configuration(1, 300.0), configuration(2, 450.0, speed_up=1.5, efficiency=0.75)],
        "baselines": {
            "ceiling": {
                "model": "2 independent copies",
                "copies": 2,
                "steady_images_per_second": 500.0,
                "per_copy_images_per_second": [250.0, 250.0],
                "test_accuracy": 0.4,
                "test_loss": 1.5,
                "train_seconds": 40.0,
                "epochs_run": 2,
            }
        },
        "warnings": [],
        "kit_vs_plain": None,
    }
    text = report_markdown(results)
    assert "| 2 slot(s) x 1 core(s) | 0.5000 | 1.2000 | 30.0 | 2 | 10.0 / 8.0 | 450.0 | 1.5 | 0.75 |" in text
    assert "reaches 0.900 of it" in text
    assert "| 2 slot(s) x 1 core(s) | 1 | spark-worker-2 | [1] | 900.0 | 0: 300.0 |" in text  # where each slot ran
    assert "CPU steal" not in text  # nothing measured, nothing claimed


def test_the_report_names_the_cpu_steal_of_each_measurement():
    results = {
        "configurations": [configuration(1, 300.0, host_steal_percent=1.5), configuration(2, 300.0, host_steal_percent=38.0)],
        "baselines": {
            "plain": {
                "threads": 1,
                "test_accuracy": 0.5,
                "test_loss": 1.0,
                "train_seconds": 9.0,
                "steady_images_per_second": 310.0,
                "host_steal_percent": 0.4,
            }
        },
        "warnings": ["the hypervisor took 38.0% ..."],
        "kit_vs_plain": 0.968,
    }
    text = report_markdown(results)
    assert "during each measurement: 1 slot(s) x 1 core(s) 1.5%, 2 slot(s) x 1 core(s) 38.0%, baseline plain 0.4%" in text
    assert "> warning: the hypervisor took 38.0%" in text


def test_the_report_breaks_each_probed_step_down_by_phase_and_draws_it(tmp_path):
    from cli.step_phases import draw_step_phases

    phases = {"step": 0.1, "input": 0.01, "compute": 0.06, "all_reduce": 0.02, "other_collectives": 0.0, "rest": 0.01}
    probe = {**phases, "collectives_per_step": 1, "workers": 2, "probe_steps": 30}
    results = {
        "configurations": [configuration(1, 300.0), configuration(2, 450.0, step_phases=probe)],
        "baselines": {},
        "warnings": [],
    }
    text = report_markdown(results)
    assert "30 steps each" in text and "| 2 slot(s) x 1 core(s) | 100.0 | 10.0 | 60.0 | 20.0 | 0.0 | 10.0 | 1 |" in text
    assert "| 1 slot(s) x 1 core(s) | 100.0" not in text  # not probed: no row
    assert draw_step_phases(results, tmp_path / "phases.png") and (tmp_path / "phases.png").stat().st_size > 1000
    assert not draw_step_phases({**results, "configurations": [configuration(1, 300.0)]}, tmp_path / "none.png")


def test_one_seed_does_not_settle_the_gate_but_a_single_difference_is_still_shown():
    from cli.gate import accuracy_gate, gate_line

    one, two = configuration(1, 300.0, test_accuracy=0.7043), configuration(2, 500.0, test_accuracy=0.7012)
    gate = accuracy_gate([one, two])
    assert gate["verdict"].startswith("not settled (1 seed") and gate["difference_pp"] == {2: -0.31}
    assert gate_line(gate) == (
        "Accuracy gate: not settled (1 seed; --repeats 2 or more): 1 slot 0.7043, 2 slots 0.7012 (-0.31 pp); tolerance 0.5 pp"
    )
    assert accuracy_gate([one])["verdict"] == "FAIL"  # nothing compared, nothing passed


def test_the_gate_passes_or_fails_only_when_twice_the_standard_error_clears_the_tolerance():
    from cli.gate import accuracy_gate

    def gate(ones, twos):
        return accuracy_gate([configuration(1, 300.0, test_accuracies=ones), configuration(2, 500.0, test_accuracies=twos)])

    close = gate([0.7000, 0.7100, 0.7200], [0.7010, 0.7090, 0.7205])  # +0.10, -0.10, +0.05
    assert close["verdict"] == "PASS" and close["standard_error_pp"] == {2: 0.06}
    worse = gate([0.7000, 0.7100, 0.7200], [0.6900, 0.6990, 0.7080])  # -1.00, -1.10, -1.20
    assert worse["verdict"] == "FAIL"
    better = gate([0.7000, 0.7100, 0.7200], [0.7100, 0.7210, 0.7320])
    assert better["verdict"] == "FAIL"  # better by too much is a difference too
    # this machine's three seeds of the scaled recipe: -1.15, +0.08, +0.90, mean -0.06 +/- 1.19
    noisy = gate([0.7583, 0.7417, 0.7414], [0.7468, 0.7425, 0.7504])
    assert noisy["difference_pp"] == {2: -0.06} and noisy["verdict"] == "not settled"


def test_the_gate_report_shows_each_epochs_validation_accuracy_and_learning_rate():
    from cli.gate import accuracy_gate, epoch_markdown

    one, two = configuration(1, 300.0, test_accuracy=0.7043), configuration(2, 500.0, test_accuracy=0.7012)
    one["history"] = [{**row, "val_accuracy": a} for row, a in zip(one["history"], (0.61, 0.7043))]
    two["history"] = [
        {**row, "val_accuracy": a, "learning_rate": r} for row, a, r in zip(two["history"], (0.58, 0.7012), (1e-3, 2e-3))
    ]
    table = epoch_markdown(accuracy_gate([one, two])).splitlines()
    assert table[0] == "| slots | 1 | 2 | test accuracy |"
    assert table[2] == "| 1, val accuracy | 0.610 | 0.704 | 0.7043 |"
    assert table[3] == "| 2, val accuracy | 0.580 | 0.701 | 0.7012 |"
    assert table[4] == "| 2, learning rate | 0.001 | 0.002 | |"  # rows without a recorded rate show none

    three = {**two, "slots": 3, "history": two["history"][:1]}  # early stopping ended it after epoch 1
    table = epoch_markdown(accuracy_gate([one, two, three])).splitlines()
    assert table[5] == "| 3, val accuracy | 0.580 | - | 0.7012 |" and table[6] == "| 3, learning rate | 0.001 | - | |"


def test_with_several_seeds_the_gate_compares_the_mean_of_the_per_seed_differences():
    from cli.gate import accuracy_gate, epoch_markdown, gate_line

    one = configuration(1, 300.0, test_accuracy=0.7300, test_accuracies=[0.7300, 0.7100, 0.7200])
    two = configuration(2, 500.0, test_accuracy=0.7483, test_accuracies=[0.7483, 0.6900, 0.7250])
    gate = accuracy_gate([one, two])
    assert gate["difference_pp_by_seed"] == {2: [1.83, -2.0, 0.5]}  # each seed alone fails or barely passes
    assert gate["difference_pp"] == {2: 0.11} and gate["verdict"] == "not settled"  # +/- 2.24
    assert gate_line(gate) == (
        "Accuracy gate: not settled: 1 slot 0.7200, 2 slots 0.7211 (+0.11 +/- 2.24 pp; per seed +1.83, -2.00, +0.50) "
        "(means of 3 seeds); tolerance 0.5 pp; +/- is twice the mean's standard error"
    )
    assert epoch_markdown(gate).splitlines()[2].endswith("| 0.7300 |")  # no per-seed curves: the one run shown
    seeded = accuracy_gate([{**one, "seeds": [43, 44, 45]}, {**two, "seeds": [43, 44, 45]}])
    assert "(means of seeds 43, 44, 45); tolerance 0.5 pp" in gate_line(seeded)  # a later gate's seeds, named


def test_the_gate_table_has_a_row_per_seed_and_each_slot_counts_rates_once():
    from cli.gate import accuracy_gate, epoch_markdown

    def curve(accuracies, rates):
        return [{"epoch": e + 1, "val_accuracy": a, "learning_rate": r} for e, (a, r) in enumerate(zip(accuracies, rates))]

    one = configuration(
        1,
        300.0,
        seeds=[43, 44],
        test_accuracies=[0.71, 0.72],
        histories=[curve((0.5, 0.71), (1e-3, 1e-3)), curve((0.4, 0.72), (1e-3, 1e-3))],
    )
    two = configuration(
        2,
        500.0,
        seeds=[43, 44],
        test_accuracies=[0.70, 0.73],
        histories=[curve((0.3, 0.70), (1e-3, 2e-3)), curve((0.45,), (1e-3,))],  # seed 44 stopped after epoch 1
    )
    table = epoch_markdown(accuracy_gate([one, two])).splitlines()
    assert table[2:] == [
        "| 1, seed 43, val accuracy | 0.500 | 0.710 | 0.7100 |",
        "| 1, seed 44, val accuracy | 0.400 | 0.720 | 0.7200 |",
        "| 1, learning rate | 0.001 | 0.001 | |",
        "| 2, seed 43, val accuracy | 0.300 | 0.700 | 0.7000 |",
        "| 2, seed 44, val accuracy | 0.450 | - | 0.7300 |",
        "| 2, learning rate | 0.001 | 0.002 | |",
    ]


def test_gate_runs_on_different_nights_combine_into_one_gate_of_all_their_seeds():
    import pytest

    from cli.gate import accuracy_gate, combined_gate

    def gate_run(seeds, ones, twos, **protocol):
        rows = [
            configuration(1, 300.0, seeds=seeds, test_accuracies=ones, histories=None),
            configuration(2, 500.0, seeds=seeds, test_accuracies=twos, histories=None),
        ]
        return {"recipe": "scaled", "epochs": 10, "configurations": rows, "accuracy_gate": accuracy_gate(rows), **protocol}

    night_one = gate_run([42], [0.7583], [0.7468])
    night_two = gate_run([43, 44], [0.7417, 0.7414], [0.7425, 0.7504])
    gate = combined_gate({"night-1": night_one, "night-2": night_two}, 42)
    assert gate["seed_values"] == [42, 43, 44]
    assert gate["difference_pp_by_seed"] == {2: [-1.15, 0.08, 0.9]}
    assert gate["difference_pp"] == {2: -0.06} and gate["verdict"] == "not settled"  # session 20's three seeds
    assert [run["seed"] for run in gate["runs"][2]] == [42, 43, 44]

    with pytest.raises(ValueError, match="seed 43 is in both night-2 and again"):
        combined_gate({"night-2": night_two, "again": night_two}, 42)
    with pytest.raises(ValueError, match="bf16 has gradient_dtype 'bfloat16' where night-1 has None"):
        combined_gate({"night-1": night_one, "bf16": gate_run([45], [0.7], [0.7], gradient_dtype="bfloat16")}, 42)
    with pytest.raises(ValueError, match="speed is not an accuracy gate run"):
        combined_gate({"night-1": night_one, "speed": {**night_two, "accuracy_gate": None}}, 42)
    # a gate from before benches kept seeds trained the job's default seed, then the next, by round
    older = gate_run([43, 44], [0.7417, 0.7414], [0.7425, 0.7504])
    older["configurations"] = [{k: v for k, v in row.items() if k != "seeds"} for row in older["configurations"]]
    assert combined_gate({"older": older, "night-3": gate_run([45], [0.7], [0.7])}, 43)["seed_values"] == [43, 44, 45]
    with pytest.raises(ValueError, match="seed 42 is in both older and night-1"):
        combined_gate({"older": older, "night-1": night_one}, 42)
    combined = {"combined_from": ["night-1", "night-2"], "accuracy_gate": gate}
    with pytest.raises(ValueError, match=r"both is a combined gate: give the runs it combined \(night-1, night-2\)"):
        combined_gate({"both": combined, "night-3": night_one}, 42)
    earliest = gate_run([42], [0.7], [0.7])  # before per-seed accuracies: one test_accuracy per row
    earliest["configurations"] = [{**row, "test_accuracies": None} for row in earliest["configurations"]]
    with pytest.raises(ValueError, match="earliest is a gate from before benches kept each seed's accuracy"):
        combined_gate({"night-2": night_two, "earliest": earliest}, 42)
    with pytest.raises(ValueError, match="list is not an accuracy gate run"):
        combined_gate({"night-2": night_two, "list": [1, 2]}, 42)
    reordered = gate_run([46], [0.7], [0.7])
    reordered["configurations"].reverse()  # --slots 2,1
    assert combined_gate({"night-2": night_two, "reordered": reordered}, 42)["seed_values"] == [43, 44, 46]


def test_the_gate_names_a_run_that_never_left_chance_beside_its_verdict():
    from cli.gate import accuracy_gate, gate_line

    one = configuration(1, 300.0, seeds=[44, 45], test_accuracies=[0.7414, 0.0972])  # seed 45: stuck at 1/10
    two = configuration(2, 500.0, seeds=[44, 45], test_accuracies=[0.7504, 0.7400])
    gate = accuracy_gate([one, two])
    assert gate["at_chance"] == ["1 slot seed 45"]
    assert gate_line(gate).endswith("; never left chance: 1 slot seed 45")
    assert accuracy_gate([{**one, "test_accuracies": [0.7414, 0.7300]}, two])["at_chance"] == []


def test_a_gate_stopped_in_its_third_seed_reports_the_two_complete_seeds_and_exits_as_interrupted(tmp_path):
    import contextlib
    import json

    import pytest

    from cli.bench import bench_with
    from cli.execution import JobInterrupted
    from tests.unit.shapes import project_context

    class Backend:
        name, data_url, runs_url = "cluster", "hdfs://namenode:8020/data/cifar10", "hdfs://namenode:8020/runs"

        def __init__(self):
            self.calls = 0

        def host_cores(self):
            return 2

        def sampler(self):
            return contextlib.nullcontext(type("Sampler", (), {"summary": lambda self: {}})())

        def run(self, job, argv, **kwargs):
            self.calls += 1
            if self.calls == 6:  # round 3's 2-slot run: Ctrl-C
                raise JobInterrupted(job)
            slots, seed = (int(argv[argv.index(flag) + 1]) for flag in ("--slots", "--seed"))
            curve = [
                {
                    **history([300.0])[0],
                    "accuracy": 0.7,
                    "loss": 1.0,
                    "val_accuracy": 0.7,
                    "val_loss": 1.0,
                    "learning_rate": 1e-3,
                }
            ]
            return configuration(slots, 300.0 * slots, seed=seed, test_accuracy=0.70 + seed / 1000, history=curve)

    c = project_context()
    c.config.data.dir = str(tmp_path / "no-data")
    backend = Backend()
    with pytest.raises(JobInterrupted) as stopped:
        bench_with(c, backend, slots="1,2", gate=True, repeats=3, seed=46, out=tmp_path / "gate", baselines="")
    assert stopped.value.code == 130
    assert "covers the 2 complete round(s) of 3" in stopped.value.message and "report.md" in stopped.value.message
    results = json.loads((tmp_path / "gate" / "results.json").read_text())
    assert (results["repeats"], results["repeats_asked"]) == (2, 3)
    assert [row["seeds"] for row in results["configurations"]] == [[46, 47], [46, 47]]
    assert (results["accuracy_gate"]["seeds"], results["accuracy_gate"]["seed_values"]) == (2, [46, 47])
    assert "interrupted in round 3 of 3" in (tmp_path / "gate" / "report.md").read_text()


class GateBackend:
    """A cluster of two cores whose 1-slot runs can only finish once two of them run at once."""

    name, data_url, runs_url = "cluster", "hdfs://namenode:8020/data/cifar10", "hdfs://namenode:8020/runs"

    def __init__(self, cores=2):
        import threading

        self.cores, self.calls, self.pair = cores, [], threading.Barrier(2, timeout=10)

    def host_cores(self):
        return self.cores

    def sampler(self):
        import contextlib

        return contextlib.nullcontext(type("Sampler", (), {"summary": lambda self: {}})())

    def run(self, job, argv, label=None, **kwargs):
        slots, seed, first_core = (int(argv[argv.index(flag) + 1]) for flag in ("--slots", "--seed", "--first-core"))
        self.calls.append((slots, seed, first_core, label))
        if slots == 1 and label:  # side by side: wait for the other seed's run (a BrokenBarrierError if alone)
            self.pair.wait()
        curve = [{**history([300.0])[0], "accuracy": 0.7, "loss": 1.0, "val_accuracy": 0.7, "val_loss": 1.0}]
        return configuration(slots, (300.0 + seed) * slots, seed=seed, test_accuracy=0.70 + seed / 1000, history=curve)


def test_the_gate_trains_two_seeds_one_slot_runs_at_once_each_on_a_core_of_its_own(tmp_path, capsys):
    import json

    from cli.bench import bench_with
    from tests.unit.shapes import project_context

    c = project_context()
    c.config.data.dir = str(tmp_path / "no-data")
    backend = GateBackend()
    bench_with(c, backend, slots="1,2", gate=True, repeats=3, seed=53, out=tmp_path / "gate", baselines="", cores_per_slot=1)
    one_slot = sorted(call for call in backend.calls if call[0] == 1)
    assert one_slot == [(1, 53, 0, "seed 53"), (1, 54, 1, "seed 54"), (1, 55, 0, None)]  # an odd last seed alone
    assert [call for call in backend.calls if call[0] == 2] == [(2, 53, 0, None), (2, 54, 0, None), (2, 55, 0, None)]
    order = [line.split("kit: bench: ", 1)[1] for line in capsys.readouterr().err.splitlines() if "kit: bench: " in line]
    assert order == [
        "1 slot(s) x 1 core(s), rounds 1 and 2 of 3 side by side (seeds 53 and 54)",
        "2 slot(s) x 1 core(s) (round 1 of 3)",
        "2 slot(s) x 1 core(s) (round 2 of 3)",
        "1 slot(s) x 1 core(s) (round 3 of 3)",
        "2 slot(s) x 1 core(s) (round 3 of 3)",
    ]
    results = json.loads((tmp_path / "gate" / "results.json").read_text())
    assert [row["seeds"] for row in results["configurations"]] == [[53, 54, 55], [53, 54, 55]]
    assert [round(r, 3) for r in results["configurations"][0]["test_accuracies"]] == [0.753, 0.754, 0.755]
    assert [(rates["1"], rates["2"]) for rates in results["rounds"]] == [(353.0, 706.0), (354.0, 708.0), (355.0, 710.0)]
    assert any("two at a time, side by side" in warning for warning in results["warnings"])
    # a 1-slot rate measured beside another run is not one slot's: no ratio or speed-up is made of it
    assert results["ratios"] == {} and all("efficiency" not in row for row in results["configurations"])


def test_without_a_spare_core_the_gate_trains_one_run_at_a_time(tmp_path):
    from cli.bench import bench_with
    from tests.unit.shapes import project_context

    c = project_context()
    c.config.data.dir = str(tmp_path / "no-data")
    backend = GateBackend(cores=3)  # two 1-slot runs of 2 cores would need 4
    bench_with(c, backend, slots="1,2", gate=True, repeats=2, seed=53, out=tmp_path / "gate", baselines="", cores_per_slot=2)
    assert backend.calls == [(1, 53, 0, None), (2, 53, 0, None), (1, 54, 0, None), (2, 54, 0, None)]
