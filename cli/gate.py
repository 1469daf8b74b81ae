"""The accuracy gate: distribution must not cost accuracy (2-slot test accuracy within 0.5 pp of 1-slot)."""

from __future__ import annotations

TOLERANCE_PP = 0.5
MIN_EPOCHS = 10


def accuracy_gate(configurations: list[dict], tolerance_pp: float = TOLERANCE_PP) -> dict:
    """PASS when every configuration's test accuracy is within tolerance_pp points of the 1-slot run's."""
    base = next(row for row in configurations if row["slots"] == 1)
    others = [row for row in configurations if row is not base]
    differences = {row["slots"]: round(100 * (row["test_accuracy"] - base["test_accuracy"]), 2) for row in others}
    passed = bool(others) and all(abs(d) <= tolerance_pp for d in differences.values())
    return {
        "verdict": "PASS" if passed else "FAIL",
        "tolerance_pp": tolerance_pp,
        "test_accuracy": {row["slots"]: row["test_accuracy"] for row in configurations},
        "epochs_run": {row["slots"]: row["epochs_run"] for row in configurations},
        "difference_pp": differences,
    }


def gate_line(gate: dict) -> str:
    base = gate["test_accuracy"][1]
    parts = [
        f"{slots} slots {gate['test_accuracy'][slots]:.4f} ({difference:+.2f} pp)"
        for slots, difference in gate["difference_pp"].items()
    ]
    return (
        f"Accuracy gate: {gate['verdict']}: 1 slot {base:.4f}, " + ", ".join(parts) + f"; tolerance {gate['tolerance_pp']} pp"
    )
