"""CPU time the hypervisor took from this machine (steal) while a measurement ran.

On a shared VM, steal makes every rate lower than the hardware gives, and unevenly so between
configurations run minutes apart; the bench reports it so such figures are not mistaken for
the kit's own scaling.
"""

from __future__ import annotations

from pathlib import Path

FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
STEAL_WARNING_PERCENT = 5.0


def cpu_times(stat_text: str | None = None) -> dict[str, int]:
    """The aggregate 'cpu' line of /proc/stat, in clock ticks (guest time is already in user)."""
    text = stat_text if stat_text is not None else Path("/proc/stat").read_text()
    values = [int(v) for v in text.splitlines()[0].split()[1 : len(FIELDS) + 1]]
    return dict(zip(FIELDS, values + [0] * (len(FIELDS) - len(values))))


def steal_percent(before: dict[str, int], after: dict[str, int]) -> float | None:
    total = sum(after.values()) - sum(before.values())
    if total <= 0:
        return None
    return round(100.0 * (after["steal"] - before["steal"]) / total, 1)


class StealMeter:
    """with StealMeter() as meter: ...; meter.percent is the share of CPU time stolen meanwhile."""

    def __init__(self, read=cpu_times):
        self.read, self.percent = read, None

    def __enter__(self):
        try:
            self.before = self.read()
        except OSError:  # no /proc/stat (not Linux): nothing to report
            self.before = None
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            self.percent = steal_percent(self.before, self.read())
        return None


def steal_warning(label: str, percent: float | None) -> str | None:
    if percent is None or percent < STEAL_WARNING_PERCENT:
        return None
    return (
        f"the hypervisor took {percent}% of this machine's CPU time during {label} (steal): its rates are "
        "lower than the hardware gives; run the bench again when the host is quiet"
    )
