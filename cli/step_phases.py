"""The bench's step-time breakdown: a table and a stacked bar per configuration (jobs/lib/step_probe.py)."""

from __future__ import annotations

from pathlib import Path

PHASES = ("input", "compute", "all_reduce", "other_collectives", "rest")
LABELS = {"all_reduce": "gradient all-reduce", "other_collectives": "other collectives"}


def probed(results: dict) -> list[tuple[str, dict]]:
    """(label, step phases) of every configuration and baseline that was probed, in report order."""
    rows = [(row["label"], row.get("step_phases")) for row in results["configurations"]]
    plain = results["baselines"].get("plain")
    if plain:
        rows.append(("plain tf-keras", plain.get("step_phases")))
    return [(label, phases) for label, phases in rows if phases]


def step_markdown(results: dict) -> str:
    rows = probed(results)
    if not rows:
        return ""
    head = " | ".join(LABELS.get(p, p) for p in PHASES)
    text = (
        "\nWhere a training step's time goes (ms per step, each phase timed alone after training, "
        f"{rows[0][1]['probe_steps']} steps each; rest = the compiled step minus the phases: Python, "
        "the optimizer, waiting for the other worker; negative when phases overlap):\n\n"
        f"| configuration | step | {head} | collectives per step |\n|---|---|{'---|' * len(PHASES)}---|\n"
    )
    for label, phases in rows:
        cells = " | ".join(f"{phases[p] * 1000:.1f}" for p in PHASES)
        text += f"| {label} | {phases['step'] * 1000:.1f} | {cells} | {phases['collectives_per_step']} |\n"
    return text


def draw_step_phases(results: dict, path: Path) -> bool:
    """A stacked bar of ms per step by phase for each probed configuration; False when none was probed."""
    rows = probed(results)
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 * len(rows) + 3, 4))
    labels = [label for label, _ in rows]
    bottoms = [0.0] * len(rows)
    for index, phase in enumerate(PHASES):
        heights = [max(phases[phase], 0.0) * 1000 for _, phases in rows]
        ax.bar(labels, heights, bottom=bottoms, color=f"C{index}", label=LABELS.get(phase, phase))
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.scatter(labels, [phases["step"] * 1000 for _, phases in rows], color="black", marker="_", s=400, label="step")
    ax.set_ylabel("ms per training step")
    ax.set_title("Where a training step's time goes")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
