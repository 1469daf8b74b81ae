"""Cluster tasks: up, down, status, logs, submit, restart."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from invoke import Exit, task

from cli.engine import ensure_engine
from cli.progress import say
from cli.settings import cluster_shape, is_loopback, kit_settings
from cluster import multihost
from cluster.lifecycle import DRIVER, Cluster, ClusterError, JobTimeLimit, diagnose
from cluster.readiness import ServiceNotReady
from cluster.topology import TopologyError

PROJECT_DIR = Path(__file__).resolve().parent.parent


def open_cluster(c, project: str | None = None) -> Cluster:
    try:
        return multihost.open_cluster(cluster_shape(c, project), ensure_engine())
    except TopologyError as error:
        raise Exit(f"kit: {error}\nFix the setting in invoke.yaml or its INVOKE_CLUSTER_* variable.") from error
    except ClusterError as error:  # a host of cluster.hosts that does not answer
        raise Exit(f"kit: {error}") from error


def args_after_double_dash() -> list[str]:
    """Arguments after `--`, exactly as given (invoke's own remainder loses their quoting)."""
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []


def print_status(report: dict) -> None:
    print(f"cluster {report['project']} (network {report['network']})")
    for service in report["services"]:
        where = f"{service['host']:10s} " if service.get("host") else ""
        print(f"  {service['name']:14s} {where}{service['state']:9s} {str(service['health']):10s} {service['ui'] or ''}")
    hdfs = report["hdfs"]
    if hdfs.get("available"):
        gb = 1e9
        print(
            f"  HDFS {hdfs['url']}: safe mode {hdfs['safemode']}, {hdfs['live_datanodes']} live / "
            f"{hdfs['dead_datanodes']} dead datanodes, {hdfs['used_bytes'] / gb:.2f} GB used of "
            f"{hdfs['capacity_bytes'] / gb:.1f} GB ({hdfs['remaining_bytes'] / gb:.1f} GB free)"
        )
        if hdfs.get("under_replicated_blocks"):
            print(
                f"  HDFS: {hdfs['under_replicated_blocks']} under-replicated block(s): normal for a minute after a "
                "datanode returns; if it stays, see 'hdfs fsck /' in the namenode (./kit logs namenode)"
            )
        left = hdfs.get("leftovers") or {}
        if hdfs.get("leftovers_error"):
            print(f"  HDFS: could not look for leftovers: {hdfs['leftovers_error']}")
        if left.get("interrupted_swap"):
            print(f"  HDFS: a staging was killed mid-swap ({', '.join(left['interrupted_swap'])}): './kit stage' finishes it")
        if left.get("staging"):
            print(f"  HDFS: left by an interrupted stage: {', '.join(left['staging'])} ('./kit clean' removes them)")
        if left.get("interrupted_runs"):
            runs = ", ".join(left["interrupted_runs"])
            print(
                f"  HDFS: interrupted runs {runs}: './kit train --resume RUN_ID' continues one, "
                "'./kit clean --runs' removes them all"
            )
    else:
        print(f"  HDFS unavailable: {hdfs.get('error')}")
    spark = report["spark"]
    if spark.get("available"):
        cores = ", ".join(f"{w['host']} {w['state']} {w['cores']} cores" for w in spark["workers"]) or "none"
        print(
            f"  Spark {spark['master']}: {spark['status']}, {spark['alive_workers']} alive worker(s) "
            f"[{cores}], {spark['executor_slots']} executor slots of {spark['executor_cores']} cores"
        )
    else:
        print(f"  Spark unavailable: {spark.get('error')}")
    problem = diagnose(report)
    if problem:
        print(f"kit: {problem}")


def bring_up(c, cluster: Cluster) -> dict:
    """Build missing images, start what is missing or stopped, wait until healthy; the status."""
    from cli.images import ensure_images

    ensure_images(c, cluster.source)
    if not is_loopback(cluster.shape.bind_address):
        say(
            f"warning: the UIs are published on {cluster.shape.bind_address} (cluster.expose_beyond_loopback): whoever "
            "reaches the namenode's port can read, write and delete any HDFS file as any user"
        )
    started = time.monotonic()
    try:
        report = cluster.up(say=say)
    except (ClusterError, ServiceNotReady) as error:
        raise Exit(
            f"kit: {error}\nSee './kit logs SERVICE' and './kit status'; './kit down' then './kit up' "
            "starts afresh while keeping the data."
        ) from error
    say(f"cluster {cluster.shape.project} healthy in {time.monotonic() - started:.1f}s")
    return report


def ready_cluster(c, project: str | None = None) -> Cluster:
    """The cluster a job runs on, brought up first when it is not (as `docker compose run` would)."""
    cluster = open_cluster(c, project)
    problem = diagnose(cluster.status())
    if problem:
        say(f"cluster {cluster.shape.project}: {problem.split(':')[0]}; bringing it up ('./kit down' stops it)")
        bring_up(c, cluster)
    return cluster


@task(help={"project": "cluster name prefix (default: cluster.project)"})
def up(c, project=None):
    """Build missing images, start the cluster and wait until it is healthy; a second call reports it."""
    print_status(bring_up(c, open_cluster(c, project)))


@task(help={"volumes": "also remove the HDFS volumes (all data)", "project": "cluster name prefix"})
def down(c, volumes=False, project=None):
    """Remove the cluster's containers and network; its HDFS data stays unless --volumes."""
    cluster = open_cluster(c, project)
    failed = cluster.down(volumes=volumes, say=say)
    left = {kind: names for kind, names in cluster.leftovers().items() if names}
    if not volumes:
        left.pop("volumes", None)
    if left or failed:
        raise Exit(
            "kit: some resources could not be removed (the rest are gone):\n  "
            + "\n  ".join(failed or [f"{kind}: {', '.join(names)}" for kind, names in left.items()])
            + "\nStop what uses them (a container of yours on the network?), then run './kit down' again."
        )
    say(f"cluster {cluster.shape.project} is down" + ("" if volumes else " (volumes kept: --volumes removes them)"))


@task(name="status", help={"json": "print the report as JSON", "project": "cluster name prefix"})
def status(c, json_=False, project=None):
    """Services and health, UI URLs, HDFS capacity and live datanodes, Spark workers and cores."""
    cluster = open_cluster(c, project)
    report = cluster.status()
    if report["hdfs"].get("available"):
        settings = kit_settings(c)
        try:
            report["hdfs"]["leftovers"] = cluster.hdfs_leftovers(settings.data.hdfs_root, settings.train.hdfs_runs)
        except ClusterError as error:
            report["hdfs"]["leftovers_error"] = str(error)
    if json_:
        print(json.dumps(report, indent=2))
    else:
        print_status(report)


@task(
    help={
        "service": "namenode, datanode-N, spark-master, spark-worker or spark-history",
        "tail": "how many lines",
        "follow": "keep following",
        "project": "cluster name prefix",
    }
)
def logs(c, service, tail=200, follow=False, project=None):
    """Show a service's logs."""
    cluster = open_cluster(c, project)
    try:
        container = cluster.container(service)
    except ClusterError as error:
        raise Exit(f"kit: {error}") from error
    if container is None:
        raise Exit(f"kit: {service} has no container: run './kit up'")
    if not follow:
        sys.stdout.write(container.logs(tail=int(tail)).decode(errors="replace"))
        return
    for chunk in container.logs(stream=True, follow=True, tail=int(tail)):
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()


@task(help={"job": "a PySpark file inside the project (e.g. jobs/x.py)", "project": "cluster name prefix"})
def submit(c, job, project=None):
    """spark-submit JOB.py from a client container on the cluster network: ./kit submit JOB.py -- ARGS"""
    path = (Path.cwd() / job).resolve()
    if not path.is_file():
        raise Exit(f"kit: {job} is not a file")
    if PROJECT_DIR not in path.parents:
        raise Exit(f"kit: {job} must live inside the project ({PROJECT_DIR}), which the client container mounts")
    cluster = open_cluster(c, project)
    command = ["spark-submit", DRIVER, f"/opt/dlkit/{path.relative_to(PROJECT_DIR)}", *args_after_double_dash()]
    try:
        code = cluster.run_client(command, PROJECT_DIR)
    except JobTimeLimit as error:
        raise Exit(f"kit: {job}: {error} (cluster.job_time_limit_hours)", code=124) from error
    except ClusterError as error:
        raise Exit(f"kit: {error}") from error
    if code:
        raise Exit(f"kit: {job} failed with exit code {code}", code=code)


@task(help={"service": "the service to restart", "project": "cluster name prefix"})
def restart(c, service, project=None):
    """Restart one service and wait until the cluster is healthy again (data and cluster ID are kept)."""
    cluster = open_cluster(c, project)
    try:
        status = cluster.restart(service, say=say)
    except (ClusterError, ServiceNotReady) as error:
        raise Exit(f"kit: {error}") from error
    print_status(status)


@task(
    help={
        "runs": "also remove the interrupted runs (<run>.partial folders; they can no longer be resumed)",
        "project": "cluster name prefix",
    }
)
def clean(c, runs=False, project=None):
    """Remove what interrupted jobs left in HDFS: staging copies, and with --runs the interrupted runs."""
    cluster = open_cluster(c, project)
    busy = cluster.running_clients()
    if busy:
        raise Exit(f"kit: a job is running ({', '.join(busy)}): what it left may still be in use; clean once it ends")
    settings = kit_settings(c)
    try:
        left = cluster.hdfs_leftovers(settings.data.hdfs_root, settings.train.hdfs_runs)
    except ClusterError as error:
        raise Exit(f"kit: {error}") from None
    if left["interrupted_swap"]:
        say(
            f"kept {', '.join(left['interrupted_swap'])}: a staging killed mid-swap, the data itself; './kit stage' finishes it"
        )
    paths = left["staging"] + (
        [f"{settings.train.hdfs_runs.rstrip('/')}/{r}.partial" for r in left["interrupted_runs"]] if runs else []
    )
    if paths:
        try:
            cluster.hdfs(["dfs", "-rm", "-r", "-f", "-skipTrash", *paths])
        except ClusterError as error:
            raise Exit(f"kit: {error}") from None
    say(f"removed {len(paths)} leftover folder(s)" + (": " + ", ".join(paths) if paths else ""))
    if left["interrupted_runs"] and not runs:
        say(f"kept interrupted runs {', '.join(left['interrupted_runs'])}: resume one, or '--runs' removes them")
