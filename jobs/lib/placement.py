"""Pin each training process to cores of its own, so N slots really get N x cores.

Spark's `spark.task.cpus` only counts cores; it does not reserve them. Two executors in one
worker container otherwise float their TensorFlow threads over the same cores, and on a small
host every all-reduce waits for whichever worker was descheduled last. Pinning gives slot k of a
host the k-th block of `cores` CPUs of those the process may use, counted from `first` (0 unless
two runs share a host side by side, each on cores of its own).
"""

from __future__ import annotations

import os
import resource

# Two, not one: a tf.data py_function (the HDFS fetch) needs an inter-op thread of its own while
# the training step waits on the iterator.
INTEROP_THREADS = 2


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def slot_cpus(available: list[int], local_rank: int, cores: int, first: int = 0) -> list[int] | None:
    """The CPUs of one slot, or None when the host has too few to give each slot its own."""
    start = first + local_rank * cores
    if cores < 1 or start + cores > len(available):
        return None
    return sorted(available)[start : start + cores]


def local_rank(addresses: list[str], index: int) -> int:
    """How many earlier barrier tasks share this task's host (addresses are host:port)."""
    host = addresses[index].rsplit(":", 1)[0]
    return sum(1 for address in addresses[:index] if address.rsplit(":", 1)[0] == host)


def pin_process(cpus: list[int]) -> None:
    """Every thread of this process onto cpus; threads started later inherit it from their creator."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            continue


def pin_slot(addresses: list[str], index: int, cores: int, first: int = 0) -> list[int] | None:
    """Pins this barrier task when its host has the CPUs for all its slots (from `first` on);
    returns the CPUs or None."""
    available = sorted(os.sched_getaffinity(0))
    cpus = slot_cpus(available, local_rank(addresses, index), cores, first)
    slots_here = sum(1 for a in addresses if a.rsplit(":", 1)[0] == addresses[index].rsplit(":", 1)[0])
    if cpus is None or first + slots_here * cores > len(available):
        return None
    pin_process(cpus)
    return cpus
