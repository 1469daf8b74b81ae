"""The bench's per-container CPU and memory, from few Docker stats readings."""

import time
from types import SimpleNamespace

from cli.execution import ResourceSampler
from cluster.topology import SERVICE_LABEL


class CountingContainer:
    """A container whose CPU counters grow by fixed amounts per reading, as Docker reports them."""

    def __init__(self, name: str, busy_ns_per_reading: int, memory_mb: list[float]):
        self.name, self.status, self.labels = name, "running", {SERVICE_LABEL: name.removeprefix("lab-")}
        self.busy, self.memory, self.reads = busy_ns_per_reading, memory_mb, 0

    def stats(self, stream, one_shot):
        assert stream is False and one_shot is True  # one reading per call, no stream left open
        self.reads += 1
        return {
            "cpu_stats": {
                "cpu_usage": {"total_usage": self.busy * self.reads},
                "system_cpu_usage": 4_000_000_000 * self.reads,  # 2 CPUs x 2 s between readings
                "online_cpus": 2,
            },
            "memory_stats": {"usage": self.memory[min(self.reads, len(self.memory)) - 1] * 2**20},
        }


def test_the_mean_cpu_spans_the_first_and_last_reading_and_the_memory_is_the_peak():
    worker = CountingContainer("lab-spark-worker", 3_000_000_000, [100.0, 900.0, 300.0])  # 1.5 of 2 CPUs
    namenode = CountingContainer("lab-namenode", 40_000_000, [50.0])  # 2% of one CPU
    cluster = SimpleNamespace(
        shape=SimpleNamespace(container_name=lambda service: f"lab-{service}"), containers=lambda: [worker, namenode]
    )
    with ResourceSampler(cluster) as sampler:
        deadline = time.monotonic() + 10
        while (worker.reads < 1 or namenode.reads < 1) and time.monotonic() < deadline:  # the first of each, at once
            time.sleep(0.01)
    summary = sampler.summary()
    assert worker.reads == 2 and namenode.reads == 2  # the first, and the last on leaving: no 20 s wait
    assert summary["spark-worker"] == {"mean_cpu_percent": 150.0, "peak_memory_mb": 900.0, "samples": 2}
    assert summary["namenode"]["mean_cpu_percent"] == 2.0


def test_a_container_read_once_has_no_cpu_figure_and_a_restart_loses_one_interval_only():
    sampler = ResourceSampler(SimpleNamespace(shape=SimpleNamespace(container_name=lambda service: f"lab-{service}")))
    sampler.samples = {
        "lab-client-1": [(5, 100, 2, 80.0)],  # a client that ended before its second reading
        "lab-spark-worker": [(0, 0, 2, 1.0), (10, 100, 2, 1.0), (2, 200, 2, 1.0), (12, 300, 2, 1.0)],  # restarted
    }
    summary = sampler.summary()
    assert summary["client-1"]["mean_cpu_percent"] is None
    assert summary["spark-worker"]["mean_cpu_percent"] == 20.0  # (10 + 10) x 2 CPUs over 200 of host time
