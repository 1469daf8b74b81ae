"""Jobs run at once (the ceiling baseline's copies): Ctrl-C and a failure stop them all, cleanly."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
import time

import pytest
from invoke import Exit

from cli import execution
from cli.execution import HostBackend, JobInterrupted, run_together
from cluster.lifecycle import Cluster
from tests.unit.shapes import default_shape


class Backend:
    """Jobs that run until stop_jobs stops them, as a stopped client container's job does."""

    def __init__(self):
        self.stopped = threading.Event()
        self.stop_calls = 0
        self.ended = 0  # jobs that saw the stop and ended

    def stop_jobs(self):
        self.stop_calls += 1
        self.stopped.set()

    def job(self, result: dict | None = None, fail: str | None = None):
        def run() -> dict:
            if fail:
                raise Exit(f"kit: jobs/train_plain.py failed: {fail}")
            if result is not None:
                return result
            if not self.stopped.wait(timeout=20):
                raise AssertionError("never stopped")
            self.ended += 1
            raise Exit("kit: jobs/train_plain.py failed (exit code 143)")

        return run


def test_the_results_come_back_in_the_order_of_the_calls():
    backend = Backend()
    assert run_together(backend, "train_plain", [backend.job({"rate": 1}), backend.job({"rate": 2})]) == [
        {"rate": 1},
        {"rate": 2},
    ]
    assert backend.stop_calls == 0


def test_ctrl_c_stops_every_job_and_ends_as_one_interrupted_job(ctrl_c):
    backend = Backend()
    threading.Timer(0.3, _thread.interrupt_main).start()  # Ctrl-C reaches the main thread alone
    started = time.monotonic()
    with pytest.raises(JobInterrupted) as stopped:
        run_together(backend, "train_plain", [backend.job(), backend.job()])
    assert stopped.value.code == 130 and "jobs/train_plain.py interrupted" in stopped.value.message
    assert backend.stop_calls == 1 and time.monotonic() - started < 10
    assert backend.ended == 2  # both jobs had ended before the task did


def test_a_failed_job_stops_the_others_and_its_own_error_is_the_one_raised():
    backend = Backend()
    with pytest.raises(Exit, match="failed: out of memory"):
        run_together(backend, "train_plain", [backend.job(), backend.job(fail="out of memory")])
    assert backend.stop_calls == 1


def test_a_cluster_stops_each_client_container_it_is_streaming():
    class Container:
        def __init__(self, name):
            self.name, self.id, self.stops = name, name, []

        def stop(self, timeout):
            self.stops.append(timeout)

    class Engine:
        def info(self):
            return {"NCPU": 2}

    cluster = Cluster(default_shape(project="dlkit-unit"), Engine())
    containers = [Container("dlkit-unit-client-1"), Container("dlkit-unit-client-2")]
    cluster.live.containers.update(containers)
    said: list[str] = []
    cluster.stop_clients(out=said.append)
    assert all(c.stops == [30] for c in containers)
    assert sorted(said) == [f"kit: stopping dlkit-unit-client-{n} (its clean-up runs, up to 30s)" for n in (1, 2)]
    # asked again, it stops only the one that started since: a job still starting up the first time
    late = Container("dlkit-unit-client-3")
    cluster.live.containers.add(late)
    cluster.stop_clients(out=said.append)
    assert late.stops == [30] and all(c.stops == [30] for c in containers) and len(said) == 3


def test_a_job_that_starts_after_the_stop_is_stopped_once_it_runs(monkeypatch, ctrl_c):
    monkeypatch.setattr(execution, "RESTOP_SECONDS", 0.2)

    class LateBackend(Backend):
        """Its second job is still starting up (its cluster being checked) when Ctrl-C comes."""

        def __init__(self):
            super().__init__()
            self.running: list[threading.Event] = []

        def stop_jobs(self):
            self.stop_calls += 1
            for stopped in self.running:
                stopped.set()

        def job(self, delay: float):
            def run() -> dict:
                time.sleep(delay)  # starting up
                stopped = threading.Event()
                self.running.append(stopped)
                if not stopped.wait(timeout=20):
                    raise AssertionError("never stopped")
                self.ended += 1
                raise Exit("kit: jobs/train_cnn.py failed (exit code 143)")

            return run

    backend = LateBackend()
    threading.Timer(0.3, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(JobInterrupted):
        run_together(backend, "train_cnn", [backend.job(0.0), backend.job(0.6)])
    assert backend.ended == 2 and backend.stop_calls >= 2 and time.monotonic() - started < 10


CLEAN_UP = """
import pathlib, signal, sys, time
def clean_up(*_):
    pathlib.Path(sys.argv[1]).write_text("cleaned")
    sys.exit(130)
signal.signal(signal.SIGINT, clean_up)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_host_job_that_the_ctrl_c_missed_gets_sigint_and_runs_its_clean_up(tmp_path, monkeypatch):
    monkeypatch.setattr(execution, "STOP_SECONDS", 1)
    backend = object.__new__(HostBackend)  # no Java or settings needed: only the jobs' bookkeeping
    backend.live = set()
    marker = tmp_path / "cleaned"
    with subprocess.Popen([sys.executable, "-c", CLEAN_UP, str(marker)], stdout=subprocess.PIPE, text=True) as job:
        assert job.stdout is not None and job.stdout.readline() == "ready\n"
        backend.live.add(job)
        backend.stop_jobs()  # as after a SIGTERM to invoke alone: the job heard nothing
        assert job.wait(timeout=5) == 130
    assert marker.read_text() == "cleaned"


def test_a_client_created_as_the_stop_comes_is_never_started():
    class Container:
        name = "dlkit-unit-client-3"

        def __init__(self):
            self.calls: list[str] = []

        def start(self):
            self.calls.append("start")

        def remove(self, force):
            self.calls.append("remove")

    container = Container()

    class Engine:
        def info(self):
            return {"NCPU": 2}

    cluster = Cluster(default_shape(project="dlkit-unit"), Engine())

    class Containers:
        def create(self, **kwargs):
            cluster.stop_clients(out=lambda line: None)  # Ctrl-C lands between create and start
            return container

    cluster.client = type("Client", (), {"containers": Containers()})()
    cluster.container = lambda name: object()  # the cluster is up
    cluster.client_kwargs = lambda *args: {}
    assert cluster.run_client(["python", "x.py"]) == 130
    assert container.calls == ["remove"] and not cluster.live.containers
