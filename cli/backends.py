"""Where the job modules run: the containerised cluster, or Spark's embedded local-cluster.

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
import subprocess
import sys
from pathlib import Path

from invoke import Exit

from cli.cluster import PROJECT_DIR, ready_cluster
from cli.pipeline import JobInterrupted, hdfs_url, job_result, run_job, runs_url
from cluster.lifecycle import STOP_SECONDS
from cli.progress import JobOutput, job_log

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

    def run(self, job: str, args: list[str], *, plain=False, cpus=None, source: Path | None = None,
            out: Path | None = None, report=None) -> dict:
        """jobs/<job>.py with {source} and {out} in args standing for the input and output folders."""
        args = [DATA_MOUNT if a == "{source}" else OUT if a == "{out}" else a for a in args]
        return run_job(self.cluster, job, args, mounts={str(source): DATA_MOUNT} if source else None,
                       collect=(OUT, out) if out else None, plain=plain, cpus=cpus, report=report,
                       log=job_log(self.c.config.data.results_dir, job))

    def read_json(self, url: str) -> dict:
        return json.loads(self.cluster.hdfs(["dfs", "-cat", hdfs_path(url)]))

    def read_json_if_exists(self, url: str) -> dict | None:
        found = self.cluster.webhdfs_read(hdfs_path(url))
        return None if found is None else json.loads(found)

    def host_cores(self) -> int:
        from cluster.lifecycle import host_cpus

        return host_cpus(self.cluster.client)

    def sampler(self):
        from cli.bench import ResourceSampler

        return ResourceSampler(self.cluster.client, self.cluster.shape.project)


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
        self.data_url = storage_root.rstrip("/") + c.config.data.hdfs_root
        self.runs_url = storage_root.rstrip("/") + c.config.train.hdfs_runs

    def run(self, job: str, args: list[str], *, plain=False, cpus=None, source: Path | None = None,
            out: Path | None = None, report=None) -> dict:
        args = [str(source) if a == "{source}" else str(out) if a == "{out}" else a for a in args]
        if out:
            out.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(PROJECT_DIR / "jobs" / f"{job}.py"), *args]
        if not plain:
            command += ["--master", self.master]
        env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR), "PYSPARK_PYTHON": sys.executable,
               "PYSPARK_DRIVER_PYTHON": sys.executable, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        output = JobOutput(job_log(self.c.config.data.results_dir, job))
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              bufsize=1) as process:
            try:
                for line in process.stdout:
                    output(line.rstrip("\n"))
            except KeyboardInterrupt:  # the job had the same SIGINT (one process group): let it clean up
                process.wait(timeout=STOP_SECONDS)
                raise JobInterrupted(job) from None
            finally:
                output.close()
        return job_result(job, process.returncode, output)

    def read_json(self, url: str) -> dict:
        from jobs.storage import open_storage

        return json.loads(open_storage(url).read_bytes(url))

    def read_json_if_exists(self, url: str) -> dict | None:
        from jobs.storage import open_storage

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
        raise Exit("kit: the embedded Spark needs Java 17 on this machine: install a JRE "
                   "(Debian: apt-get install openjdk-17-jre-headless), then run the task again")
    print("kit: installing Java 17 for the embedded Spark (openjdk-17-jre-headless)", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "openjdk-17-jre-headless"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise Exit(f"kit: '{' '.join(command)}' failed:\n{done.stderr[-2000:]}\nInstall a Java 17 JRE yourself.")


def embedded_backend(c) -> HostBackend:
    root = (Path(c.config.data.results_dir) / "embedded" / "storage").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return HostBackend(c, EMBEDDED_MASTER, str(root), "embedded")


def open_backend(c, project=None, embedded=False, master=None, hdfs=None):
    """--master/--hdfs: an existing cluster; --embedded: local-cluster; otherwise the containers."""
    if master or hdfs:
        if not (master and hdfs):
            raise Exit("kit: an existing cluster needs both --master spark://HOST:7077 and --hdfs hdfs://HOST:8020")
        return HostBackend(c, master, hdfs, "external")
    return embedded_backend(c) if embedded else ClusterBackend(c, project)
