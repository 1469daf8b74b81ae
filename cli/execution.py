"""How the tasks run a job and get its result, and where: the containerised cluster, or Spark's
embedded local-cluster. Below the task modules: they import this, never the other way.

The jobs take their master and storage root as arguments, so the tasks only choose a backend:
- ClusterBackend: a client container on the cluster network, HDFS storage, Docker stats;
- HostBackend: `python jobs/<job>.py --master local-cluster[2,2,2048]` on this machine with
  a local folder instead of HDFS; for hosts where no Docker engine can run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from invoke import Exit

from cli.cluster import PROJECT_DIR, ready_cluster
from cli.progress import JobOutput, job_log
from cli.settings import cluster_shape, kit_settings
from cluster.lifecycle import DRIVER, STOP_SECONDS, ClusterError, JobTimeLimit, diagnose, host_cpus
from cluster.topology import SERVICE_LABEL
from jobs.lib import result as result_line


def run_job(
    cluster,
    job: str,
    args: list[str],
    mounts=None,
    collect=None,
    plain=False,
    cpus=None,
    report=None,
    log: Path | None = None,
    label: str | None = None,
) -> dict:
    """spark-submit jobs/<job>.py on the cluster (plain: python, no Spark); returns the RESULT JSON.

    report: a status() the caller has just read, so the cluster is not asked twice.
    log: a file for the job's whole output (the terminal is spared TensorFlow's noise).
    label: shown before each of its lines on the terminal (jobs run side by side).
    A job still running after cluster.job_time_limit_hours is stopped as Ctrl-C stops it."""
    problem = diagnose(report or cluster.status())
    if problem:
        raise Exit(f"kit: {problem}")
    launcher = ["python"] if plain else ["spark-submit", DRIVER]
    command = [*launcher, f"/opt/dlkit/jobs/{job}.py", *args]
    output = JobOutput(log, label=label)
    try:
        code = cluster.run_client(command, PROJECT_DIR, out=output, mounts=mounts, collect=collect, cpus=cpus)
    except JobTimeLimit as expired:
        raise JobInterrupted(job, reason=TIME_LIMIT_REASON.format(hours=expired.seconds / 3600)) from None
    except ClusterError as error:
        raise Exit(f"kit: {error}") from error
    except KeyboardInterrupt:
        raise JobInterrupted(job) from None
    finally:
        output.close()
    return job_result(job, code, output)


TIME_LIMIT_REASON = "ran past its time limit of {hours:g} h (cluster.job_time_limit_hours)"


class JobInterrupted(Exit):
    """Ctrl-C or the time limit: the job was stopped with SIGTERM and ran its clean-up; the task says what was kept."""

    def __init__(self, job: str, kept: str = "nothing half-written is left behind", reason: str = "interrupted"):
        self.job, self.reason = job, reason
        code = 130 if reason == "interrupted" else 124  # 124: timeout(1)'s code for a time limit
        super().__init__(f"kit: jobs/{job}.py {reason}: it was stopped and ran its clean-up; {kept}", code=code)

    def keeping(self, kept: str) -> JobInterrupted:
        """The same stop, with the task's own account of what was kept."""
        return JobInterrupted(self.job, kept, self.reason)


def run_together(backend, job: str, calls: list[Callable[[], dict]]) -> list[dict]:
    """Runs the calls (each one backend.run of jobs/<job>.py) at once, a thread each; their results in order.

    Only the main thread hears Ctrl-C (or SIGTERM): it has the backend stop every job still
    running (each runs its clean-up), waits for them, and raises JobInterrupted. A job that
    fails stops the others, whose results would mean nothing alone, and its error is raised.
    A job still starting up when the stop came (its cluster being checked) is stopped once it runs.
    """
    results: list[dict | None] = [None] * len(calls)
    failures: list[BaseException] = []  # in the order they happened: the first is the cause
    # Events, not Thread.join: a join that a Ctrl-C interrupts can leave is_alive() False early
    ended = [threading.Event() for _ in calls]

    def one(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as error:  # raised by the main thread, not printed as a thread's traceback
            failures.append(error)
        finally:
            ended[index].set()

    def stop_until_ended(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        backend.stop_jobs()
        for done in ended:
            while not done.wait(timeout=RESTOP_SECONDS) and time.monotonic() < deadline:
                backend.stop_jobs()  # stops only jobs that started since the last time

    try:
        for index in range(len(calls)):
            threading.Thread(target=one, args=(index,), daemon=True).start()
        while not failures and not all(done.is_set() for done in ended):
            next(done for done in ended if not done.is_set()).wait(timeout=0.5)
        if failures and not all(done.is_set() for done in ended):
            stop_until_ended(STOP_SECONDS + 60)  # the others' results would mean nothing alone
    except KeyboardInterrupt:
        stop_until_ended(STOP_SECONDS + 60)
        raise JobInterrupted(job) from None
    if failures:
        raise failures[0]
    return results  # type: ignore[return-value]  # no failure: every call returned


RESTOP_SECONDS = 2.0


def job_result(job: str, code: int, output: JobOutput) -> dict:
    if code:
        raise Exit(f"kit: jobs/{job}.py failed (exit code {code}); its messages are above{output.where()}", code=code)
    result = result_line.find(output.lines)
    if result is None:
        raise Exit(f"kit: jobs/{job}.py ended without a result line; its messages are above{output.where()}")
    return result


def hdfs_url(c, project=None) -> str:
    """Derived from the settings alone: no engine call, so tasks may ask for it freely."""
    return cluster_shape(c, project).default_fs + kit_settings(c).data.hdfs_root


def runs_url(c, project=None) -> str:
    return cluster_shape(c, project).default_fs + kit_settings(c).train.hdfs_runs


# Each one-shot stats call is dockerd and containerd work on the cores the slots train on: reading
# every container every 5 s cost 14 ms/s of a 2-core host during 2-slot training, 10 more than a
# run with no sampling (and a slot that loses its core stalls the other at the all-reduce). The
# CPU figure is the counters' growth between readings, a last one taken as the configuration
# ends, so reading less often coarsens the memory peak and the start of a container's window
# (each training process's own peak is measured exactly by the job).
SAMPLE_SECONDS = 20.0
DISCOVER_SECONDS = 5.0  # a listing of the project's containers, so a new client is read soon


class ResourceSampler:
    """Mean CPU % and peak memory of every container of the project, from one-shot Docker stats
    every SAMPLE_SECONDS.

    cluster.containers() finds them on every engine (several hosts: each service's task on its own);
    a service's samples go under its name, a client's under its container's."""

    def __init__(self, cluster):
        self.cluster, self.shape = cluster, cluster.shape
        self.samples: dict[str, list[tuple[int, int, int, float]]] = {}  # CPU ns, host CPU ns, CPUs, memory MB
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.watched: dict[str, object] = {}  # name: container

    def _follow(self, container) -> None:
        try:
            while not self.stop.is_set():
                self.read(container)
                self.stop.wait(SAMPLE_SECONDS)
        except Exception:  # the container went away (a finished client): its samples stay
            return

    def read(self, container) -> None:
        stats = container.stats(stream=False, one_shot=True)
        cpu = stats.get("cpu_stats", {})
        if not cpu.get("system_cpu_usage"):  # stopped, not yet removed: no reading, not a zero one
            raise LookupError(container.name)
        reading = (
            cpu.get("cpu_usage", {}).get("total_usage", 0),
            cpu["system_cpu_usage"],
            cpu.get("online_cpus") or 1,
            stats.get("memory_stats", {}).get("usage", 0) / 2**20,
        )
        self.samples.setdefault(self.shown_as(container), []).append(reading)

    def shown_as(self, container) -> str:
        service = container.labels.get(SERVICE_LABEL, "")
        if service and service != "client":  # a swarm task's container is named <service>.1.<task ID>
            return self.shape.container_name(service)
        return container.name

    def _discover(self) -> None:
        while True:
            for container in self.cluster.containers():
                if container.status == "running" and container.name not in self.watched:
                    self.watched[container.name] = container
                    thread = threading.Thread(target=self._follow, args=(container,), daemon=True)
                    thread.start()
                    self.threads.append(thread)
            if self.stop.wait(DISCOVER_SECONDS):
                return

    def __enter__(self):
        threading.Thread(target=self._discover, daemon=True).start()
        return self

    def __exit__(self, kind, *_):
        self.stop.set()
        if kind is not None:  # an interrupted measurement reports nothing: no reason to wait
            return
        for thread in self.threads:
            thread.join(10)
        for container in list(self.watched.values()):  # a last reading closes each CPU window
            with contextlib.suppress(Exception):  # gone already (a finished client)
                self.read(container)

    def summary(self) -> dict:
        """Per container: mean CPU % over its readings (None with fewer than two), peak memory."""
        out = {}
        for name, rows in sorted(self.samples.items()):
            busy = host = 0
            for (cpu_before, host_before, _, _), (cpu_after, host_after, cpus, _) in zip(rows, rows[1:]):
                if cpu_after >= cpu_before and host_after > host_before:  # a restart sets the counter back
                    busy, host = busy + (cpu_after - cpu_before) * cpus, host + host_after - host_before
            out[name.removeprefix(self.shape.container_name(""))] = {
                "mean_cpu_percent": round(100.0 * busy / host, 1) if host else None,
                "peak_memory_mb": round(max(row[3] for row in rows), 1),
                "samples": len(rows),
            }
        return out


EMBEDDED_MASTER = "local-cluster[2,2,2048]"  # two executors of 2 cores and 2 GB, as the containerised worker
DATA_MOUNT = "/opt/dlkit-data"
OUT = "/home/spark/out"


class ClusterBackend:
    name = "cluster"

    def __init__(self, c, project=None, cluster=None):
        """cluster: a Cluster the caller has just brought up."""
        self.c, self.project = c, project
        self.cluster = cluster or ready_cluster(c, project)
        self.data_url, self.runs_url = hdfs_url(c, project), runs_url(c, project)

    def run(
        self,
        job: str,
        args: list[str],
        *,
        plain=False,
        cpus=None,
        source: Path | None = None,
        out: Path | None = None,
        report=None,
        label: str | None = None,
    ) -> dict:
        """jobs/<job>.py with {source} and {out} in args standing for the input and output folders;
        label: shown before each of its lines on the terminal (jobs run side by side)."""
        args = [DATA_MOUNT if a == "{source}" else OUT if a == "{out}" else a for a in args]
        return run_job(
            self.cluster,
            job,
            args,
            mounts={str(source): DATA_MOUNT} if source else None,
            collect=(OUT, out) if out else None,
            plain=plain,
            cpus=cpus,
            report=report,
            log=job_log(kit_settings(self.c).data.results_dir, job),
            label=label,
        )

    def drivers_of(self, run_id: str) -> list[str]:
        """Client containers still driving this run (one whose `invoke` was killed goes on)."""
        return self.cluster.running_clients(mentioning=run_id)

    def read_json_if_exists(self, url: str) -> dict | None:
        found = self.cluster.webhdfs_read(hdfs_path(url))
        return None if found is None else json.loads(found)

    def host_cores(self) -> int:
        return host_cpus(self.cluster.client)

    def sampler(self):
        return ResourceSampler(self.cluster)

    def stop_jobs(self) -> None:
        """Stops the jobs this backend's runs are streaming (see run_together)."""
        self.cluster.stop_clients()


def hdfs_path(url: str) -> str:
    """hdfs://namenode:8020/data/x -> /data/x"""
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]


class NoSampler(contextlib.AbstractContextManager):
    def __exit__(self, *exc):
        return None

    def summary(self) -> dict:
        return {}


class HostBackend:
    """The driver on this machine: the embedded local-cluster, or a Spark 3.4 cluster of your own."""

    def __init__(self, c, master: str, storage_root: str, name: str):
        self.c, self.master, self.name = c, master, name
        ensure_java()
        self.data_url = storage_root.rstrip("/") + kit_settings(c).data.hdfs_root
        self.runs_url = storage_root.rstrip("/") + kit_settings(c).train.hdfs_runs
        self.live: set[subprocess.Popen] = set()  # the jobs run() is streaming now

    def run(
        self,
        job: str,
        args: list[str],
        *,
        plain=False,
        cpus=None,
        source: Path | None = None,
        out: Path | None = None,
        report=None,
        label: str | None = None,
    ) -> dict:
        args = [str(source) if a == "{source}" else str(out) if a == "{out}" else a for a in args]
        if out:
            out.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(PROJECT_DIR / "jobs" / f"{job}.py"), *args]
        if not plain:
            command += ["--master", self.master]
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_DIR),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        output = JobOutput(job_log(kit_settings(self.c).data.results_dir, job), label=label)
        hours = kit_settings(self.c).cluster.job_time_limit_hours
        with subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as process:
            self.live.add(process)
            expired = threading.Event()

            def expire() -> None:  # SIGINT, as Ctrl-C: the job's clean-up runs (a plain SIGTERM would skip it)
                expired.set()
                process.send_signal(signal.SIGINT)

            watchdog = threading.Timer(hours * 3600, expire)
            watchdog.daemon = True
            watchdog.start()
            try:
                for line in process.stdout:
                    output(line.rstrip("\n"))
                try:
                    process.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            except KeyboardInterrupt:  # the job had the same SIGINT (one process group): let it clean up
                process.wait(timeout=STOP_SECONDS)
                raise JobInterrupted(job) from None
            finally:
                watchdog.cancel()
                output.close()
                self.live.discard(process)
        if expired.is_set() and process.returncode:  # not a job that ended by itself as the limit came
            raise JobInterrupted(job, reason=TIME_LIMIT_REASON.format(hours=hours))
        return job_result(job, process.returncode, output)

    def drivers_of(self, run_id: str) -> list[str]:
        """A driver on this machine dies with its `invoke`: none outlives it."""
        return []

    def stop_jobs(self) -> None:
        """Stops the jobs run() is streaming in other threads (see run_together).

        A Ctrl-C at the terminal reached them too (one process group), and a second SIGINT would cut
        their clean-up short: each gets STOP_SECONDS to end; one still running (a SIGTERM reached
        `invoke` alone, or a job failed beside it) then gets SIGINT, and is killed after STOP_SECONDS more.
        """
        deadline = time.monotonic() + STOP_SECONDS
        for process in list(self.live):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        for signal_number, grace in ((signal.SIGINT, STOP_SECONDS), (signal.SIGKILL, 5)):
            running = [process for process in list(self.live) if process.poll() is None]
            for process in running:
                process.send_signal(signal_number)
            for process in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=grace)

    def read_json_if_exists(self, url: str) -> dict | None:
        from jobs.lib.storage import open_storage

        storage = open_storage(url)
        return json.loads(storage.read_bytes(url)) if storage.exists(url) else None

    def host_cores(self) -> int:
        return len(os.sched_getaffinity(0))

    def sampler(self):
        return NoSampler()


def ensure_java() -> None:
    """The embedded Spark runs in a JVM on this machine."""
    if shutil.which("java"):
        return
    from cli.engine import can_install

    if not can_install():
        raise Exit(
            "kit: the embedded Spark needs Java 17 on this machine: install a JRE "
            "(Debian: apt-get install openjdk-17-jre-headless), then run the task again"
        )
    print("kit: installing Java 17 for the embedded Spark (openjdk-17-jre-headless)", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "openjdk-17-jre-headless"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise Exit(f"kit: '{' '.join(command)}' failed:\n{done.stderr[-2000:]}\nInstall a Java 17 JRE yourself.")


def embedded_backend(c) -> HostBackend:
    root = (Path(kit_settings(c).data.results_dir) / "embedded" / "storage").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return HostBackend(c, EMBEDDED_MASTER, str(root), "embedded")


def open_backend(c, project=None, embedded=False, master=None, hdfs=None):
    """--master/--hdfs: an existing cluster; --embedded: local-cluster; otherwise the containers."""
    if master or hdfs:
        if not (master and hdfs):
            raise Exit("kit: an existing cluster needs both --master spark://HOST:7077 and --hdfs hdfs://HOST:8020")
        return HostBackend(c, master, hdfs, "external")
    return embedded_backend(c) if embedded else ClusterBackend(c, project)
