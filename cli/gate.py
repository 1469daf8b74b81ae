"""The accuracy gate: distribution must not cost accuracy (2-slot test accuracy within 0.5 pp of 1-slot).

One run's test accuracy moves with its trajectory by more than the tolerance (on the hard
stand-in the seeds' differences spread about 1 pp), so the gate compares the mean of the per-seed
differences and settles only when that mean, give or take twice its standard error, lies wholly
inside the tolerance (PASS) or wholly outside it (FAIL). Otherwise it is not settled, as a bench
ratio whose range straddles its target is, and more seeds narrow it.
"""

from __future__ import annotations

import statistics

TOLERANCE_PP = 0.5
MIN_EPOCHS = 10
MIN_SEEDS = 2  # one seed has no spread to weigh its difference against
MARGIN_ERRORS = 2  # the mean's standard errors either side: about a 95% interval
AT_CHANCE = 0.15  # a test accuracy below this never left chance (CIFAR-10's 10 classes: 0.10)


def accuracy_gate(configurations: list[dict], tolerance_pp: float = TOLERANCE_PP) -> dict:
    """PASS when every configuration's test accuracy is within tolerance_pp points of the 1-slot run's,
    FAIL when one's is beyond it, each by the mean of the per-seed differences and with
    MARGIN_ERRORS standard errors to spare; else not settled (and with fewer than MIN_SEEDS seeds).

    test_accuracies holds one accuracy per seed, in the same seed order for every configuration."""
    base = next(row for row in configurations if row["slots"] == 1)
    others = [row for row in configurations if row is not base]

    def accuracies(row: dict) -> list[float]:
        return row.get("test_accuracies") or [row["test_accuracy"]]

    per_seed = {row["slots"]: [round(100 * (a - b), 2) for a, b in zip(accuracies(row), accuracies(base))] for row in others}
    differences = {slots: round(sum(d) / len(d), 2) for slots, d in per_seed.items()}
    errors = {slots: standard_error(d) for slots, d in per_seed.items()}
    return {
        "verdict": gate_verdict(differences, errors, tolerance_pp) if others else "FAIL",
        "tolerance_pp": tolerance_pp,
        "seeds": len(accuracies(base)),
        "seed_values": base.get("seeds"),
        "test_accuracy": {row["slots"]: round(sum(accuracies(row)) / len(accuracies(row)), 4) for row in configurations},
        "test_accuracy_by_seed": {row["slots"]: accuracies(row) for row in configurations},
        "epochs_run": {row["slots"]: row["epochs_run"] for row in configurations},
        "difference_pp": differences,
        "difference_pp_by_seed": per_seed,
        "standard_error_pp": errors,
        # such a seed measures a start that never came, not distribution: named beside the verdict
        "at_chance": [
            f"{row['slots']} slot{'s' if row['slots'] > 1 else ''}" + (f" seed {seed}" if seed is not None else "")
            for row in configurations
            for seed, accuracy in zip(row.get("seeds") or [None] * len(accuracies(row)), accuracies(row))
            if accuracy < AT_CHANCE
        ],
        # context for the verdict: how far one epoch's figure moves, and where the rate was
        "runs": {row["slots"]: runs_of(row) for row in configurations},
    }


def standard_error(differences: list[float]) -> float | None:
    """The standard error of the differences' mean, in pp; None below MIN_SEEDS."""
    if len(differences) < MIN_SEEDS:
        return None
    return round(statistics.stdev(differences) / len(differences) ** 0.5, 2)


def gate_verdict(differences: dict, errors: dict, tolerance_pp: float) -> str:
    """FAIL when any slot count's interval lies beyond the tolerance, PASS when every one lies within it."""
    if any(error is None for error in errors.values()):
        return f"not settled (1 seed; --repeats {MIN_SEEDS} or more)"
    margins = {slots: MARGIN_ERRORS * errors[slots] for slots in differences}
    if any(abs(d) - margins[slots] > tolerance_pp for slots, d in differences.items()):
        return "FAIL"
    if all(abs(d) + margins[slots] <= tolerance_pp for slots, d in differences.items()):
        return "PASS"
    return "not settled"


def runs_of(row: dict) -> list[dict]:
    """Each run of a configuration (one per seed in the gate): its seed, per-epoch validation accuracy
    and learning rate, and test accuracy. A row without per-round histories is its one run."""
    histories = row.get("histories") or [row["history"]]
    seeds = row.get("seeds") or [None] * len(histories)
    accuracies = row.get("test_accuracies") or [row["test_accuracy"]]
    return [
        {
            "seed": seed,
            "val_accuracy": [h.get("val_accuracy") for h in history],
            "learning_rate": [h.get("learning_rate") for h in history],
            "test_accuracy": accuracy,
        }
        for seed, history, accuracy in zip(seeds, histories, accuracies)
    ]


def gate_line(gate: dict) -> str:
    base = gate["test_accuracy"][1]
    seeds = gate["seeds"]
    parts = []
    for slots, difference in gate["difference_pp"].items():
        error = (gate.get("standard_error_pp") or {}).get(slots)
        margin = f" +/- {MARGIN_ERRORS * error:.2f}" if error is not None else ""
        each = f"; per seed {', '.join(f'{d:+.2f}' for d in gate['difference_pp_by_seed'][slots])}" if seeds > 1 else ""
        parts.append(f"{slots} slots {gate['test_accuracy'][slots]:.4f} ({difference:+.2f}{margin} pp{each})")
    named = gate.get("seed_values")
    which = f"seeds {', '.join(str(seed) for seed in named)}" if named and None not in named else f"{seeds} seeds"
    means = f" (means of {which})" if seeds > 1 else (f" (seed {named[0]})" if named and named[0] is not None else "")
    return (
        f"Accuracy gate: {gate['verdict']}: 1 slot {base:.4f}, "
        + ", ".join(parts)
        + f"{means}; tolerance {gate['tolerance_pp']} pp"
        + ("; +/- is twice the mean's standard error" if seeds >= MIN_SEEDS else "")
        + (f"; never left chance: {', '.join(gate['at_chance'])}" if gate.get("at_chance") else "")
    )


def epoch_markdown(gate: dict) -> str:
    """Validation accuracy after each epoch, a row per run (per seed when there are several), each
    slot count's learning rates below its runs (a seed changes the order, not the schedule).

    A run that early stopping ended sooner leaves its later epochs' cells empty."""
    runs = gate["runs"]
    widest = max((len(run["val_accuracy"]) for each in runs.values() for run in each), default=0)

    def cells(values: list, form: str) -> list[str]:
        shown = [format(v, form) if v is not None else "-" for v in values]
        return shown + ["-"] * (widest - len(values))

    def row(*cells: str) -> str:
        return "| " + " | ".join(cells).rstrip() + " |"  # an empty last cell reads "| |"

    header = ["slots", *(str(epoch) for epoch in range(1, widest + 1)), "test accuracy"]
    lines = [row(*header), "|" + "---|" * len(header)]
    for slots, each in runs.items():
        for run in each:
            seed = f", seed {run['seed']}" if len(each) > 1 and run["seed"] is not None else ""
            lines.append(row(f"{slots}{seed}, val accuracy", *cells(run["val_accuracy"], ".3f"), f"{run['test_accuracy']:.4f}"))
        rates = max((run["learning_rate"] for run in each), key=len)
        if any(rate is not None for rate in rates):
            lines.append(row(f"{slots}, learning rate", *cells(rates, ".2g"), ""))
    return "\n".join(lines) + "\n"


# what two gate runs must share for their seeds to be one experiment
SAME_PROTOCOL = ("recipe", "gradient_dtype", "batch_per_worker", "epochs", "synthetic")


def combined_gate(runs: dict[str, dict], first_default_seed: int) -> dict:
    """One gate over the seeds of several --accuracy-gate benches (name -> its results.json), as if one bench
    had trained them all: a gate of ~17 seeds takes nights, and each night's run adds to the others.

    A gate from before benches recorded their seeds trained first_default_seed, +1, ... by round.
    Raises ValueError naming the run that cannot join: not a gate, another protocol or other slot counts,
    or a seed already given."""
    if len(runs) < 2:
        raise ValueError("give two or more gate runs to combine")
    first_name, first = next(iter(runs.items()))
    slot_list = sorted(row["slots"] for row in gate_rows(first_name, first))
    merged = {
        slots: {"slots": slots, "test_accuracies": [], "seeds": [], "histories": [], "epochs_run": 0} for slots in slot_list
    }
    owner: dict[int, str] = {}  # seed -> the run that trained it
    for name, results in runs.items():
        rows = gate_rows(name, results)
        for key in SAME_PROTOCOL:
            if results.get(key) != first.get(key):
                raise ValueError(
                    f"{name} has {key} {results.get(key)!r} where {first_name} has {first.get(key)!r}: "
                    "only one protocol's seeds combine"
                )
        if sorted(row["slots"] for row in rows) != slot_list:
            raise ValueError(
                f"{name} trained slots {sorted(row['slots'] for row in rows)}, {first_name} {slot_list}: "
                "combine runs of the same --slots"
            )
        rounds = len(rows[0]["test_accuracies"])
        seeds = rows[0].get("seeds") or [first_default_seed + index for index in range(rounds)]
        if None in seeds or any((row.get("seeds") or seeds) != seeds for row in rows):
            raise ValueError(f"{name} does not say which seed each of its runs trained with: leave it out")
        for seed in seeds:
            if seed in owner:
                raise ValueError(f"seed {seed} is in both {owner[seed]} and {name}: give each seed once")
            owner[seed] = name
        for row in rows:
            into = merged[row["slots"]]
            into["test_accuracies"] += row["test_accuracies"]
            into["seeds"] += seeds
            # benches before per-seed curves kept one history: the seeds' epoch rows stay empty
            into["histories"] += row.get("histories") or [[] for _ in seeds]
            into["epochs_run"] = max(into["epochs_run"], row["epochs_run"])
    return accuracy_gate(list(merged.values()), first["accuracy_gate"]["tolerance_pp"])


def gate_rows(name: str, results) -> list[dict]:
    """A gate run's configurations, each with its per-seed accuracies; ValueError naming what it is instead."""
    if isinstance(results, dict) and results.get("combined_from"):
        raise ValueError(f"{name} is a combined gate: give the runs it combined ({', '.join(results['combined_from'])})")
    if not isinstance(results, dict) or not results.get("accuracy_gate") or not results.get("configurations"):
        raise ValueError(f"{name} is not an accuracy gate run ('./kit bench --accuracy-gate' makes one)")
    rows = results["configurations"]
    if any(not row.get("test_accuracies") for row in rows):
        raise ValueError(f"{name} is a gate from before benches kept each seed's accuracy: leave it out")
    return rows
