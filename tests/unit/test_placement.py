import os

from jobs.lib import placement


def test_slots_on_one_host_get_consecutive_blocks_of_cores():
    addresses = ["10.0.0.5:4001", "10.0.0.5:4002", "10.0.0.6:4001"]
    assert placement.local_rank(addresses, 0) == 0
    assert placement.local_rank(addresses, 1) == 1
    assert placement.local_rank(addresses, 2) == 0
    assert placement.slot_cpus([0, 1, 2, 3], 1, 2) == [2, 3]


def test_a_run_beside_another_on_the_same_host_takes_the_cores_after_the_others():
    assert placement.slot_cpus([0, 1], 0, 1, first=1) == [1]
    assert placement.slot_cpus([0, 1, 2, 3], 1, 1, first=2) == [3]
    assert placement.slot_cpus([0, 1], 1, 1, first=1) is None  # past the host's CPUs: not pinned


def test_too_few_cpus_for_every_slot_means_no_pinning():
    assert placement.slot_cpus([0, 1], 1, 2) is None
    # two slots of two cores on a two-CPU host: neither slot is pinned, so they share fairly
    assert placement.pin_slot(["h:1", "h:2"], 0, len(os.sched_getaffinity(0))) is None


def test_pinning_moves_every_thread_of_the_process(tmp_path):
    import threading

    before = sorted(os.sched_getaffinity(0))
    started, release = threading.Event(), threading.Event()
    worker = threading.Thread(target=lambda: (started.set(), release.wait()))
    worker.start()
    started.wait()
    try:
        placement.pin_process(before[:1])
        threads = os.listdir("/proc/self/task")
        assert all(os.sched_getaffinity(int(t)) == set(before[:1]) for t in threads)
    finally:
        release.set()
        worker.join()
        placement.pin_process(before)
