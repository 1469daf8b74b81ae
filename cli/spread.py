"""Figures that hold on a noisy host: ratios measured side by side in interleaved rounds.

The VM loses a varying share of its CPU to the hypervisor from minute to minute, so one run per
configuration proves nothing. Each round measures every configuration once, and a ratio is
taken within a round (its runs minutes apart, not an hour); the report gives the median of the
rounds with their range. A target is met only when the whole range clears it.
"""

from __future__ import annotations

import statistics

# ratio name -> (target, what it compares)
TARGETS = {
    "efficiency": (0.90, "2-slot rate / (2 x 1-slot rate)"),
    "kit_vs_plain": (0.95, "kit 1-slot rate / plain tf-keras rate, same core"),
    "widest_vs_ceiling": (0.90, "widest run's rate / independent plain copies' summed rate"),
}


def summarise(values: list[float]) -> dict:
    """Median and range of one figure over the rounds."""
    return {
        "median": round(statistics.median(values), 3),
        "low": round(min(values), 3),
        "high": round(max(values), 3),
        "rounds": len(values),
        "values": [round(v, 3) for v in values],
    }


MIN_ROUNDS = 3


def verdict(summary: dict, target: float) -> str:
    """met (the whole range clears it), missed (the whole range falls short), or not settled
    (the range straddles the target, or fewer than MIN_ROUNDS rounds: one run proves nothing)."""
    if summary["rounds"] < MIN_ROUNDS:
        return f"not settled ({summary['rounds']} round(s); --repeats {MIN_ROUNDS} or more)"
    if summary["low"] >= target:
        return "met"
    if summary["high"] < target:
        return "missed"
    return "not settled"


def round_ratios(rates: dict) -> dict:
    """One round's ratios from its rates: {slots: rate, "plain": rate, "ceiling": rate}."""
    counts = sorted(key for key in rates if isinstance(key, int))
    ratios = {}
    if 1 in rates and rates[1]:
        widest = max(counts)
        if widest > 1:
            ratios["efficiency"] = rates[widest] / (widest * rates[1])
        if rates.get("plain"):
            ratios["kit_vs_plain"] = rates[1] / rates["plain"]
    if counts and rates.get("ceiling"):
        ratios["widest_vs_ceiling"] = rates[max(counts)] / rates["ceiling"]
    return ratios


def ratio_table(rounds: list[dict]) -> dict:
    """Each ratio's summary over the rounds and its verdict against the target."""
    per_round = [round_ratios(rates) for rates in rounds]
    table = {}
    for name, (target, meaning) in TARGETS.items():
        values = [ratios[name] for ratios in per_round if name in ratios]
        if values:
            summary = summarise(values)
            table[name] = {**summary, "target": target, "meaning": meaning, "verdict": verdict(summary, target)}
    return table


def ratio_markdown(table: dict) -> str:
    if not table:
        return ""
    rounds = max(row["rounds"] for row in table.values())
    lines = [
        f"\nRatios over {rounds} interleaved round(s): median [lowest - highest] against the target "
        "(met only when the whole range clears it):\n",
        "| ratio | what it compares | median | range | per round | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {row['meaning']} | {row['median']:.3f} | {row['low']:.3f} - {row['high']:.3f} "
            f"| {', '.join(f'{v:.3f}' for v in row['values'])} | >= {row['target']:.2f} | {row['verdict']} |"
        )
    return "\n".join(lines) + "\n"
