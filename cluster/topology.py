"""The cluster as Python data: one source of truth for `./kit up` and for the tests.

A ``ClusterShape`` is what a user sets (invoke.yaml); ``plan(shape)`` validates it and turns it
into ``Service`` specs (image, command, rendered-config environment, limits, health check),
before any container exists.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import uuid

from cluster.hosts import HostSpec, host_problems, running

PROJECT_LABEL = "dlkit.project"
SERVICE_LABEL = "dlkit.service"

NAMENODE_RPC_PORT = 8020
SPARK_MASTER_PORT = 7077
HDFS_EVENTS_DIR = "/spark-events"
HEALTHCHECK = ["CMD", "python3", "/opt/kit/healthcheck.py"]
STALE_DATANODE_MS = 4000  # the least the namenode allows: 3 heartbeats of 1 s, and one to spare
RECONSTRUCTION_RETRY_S = 20  # a failed block copy is retried within twice this (cli status promises a minute)


class TopologyError(ValueError):
    """A cluster shape that cannot work, caught before anything starts."""


@dataclasses.dataclass(frozen=True)
class ClusterShape:
    """What a cluster is made of; its values come from invoke.yaml's cluster section (cli/settings.py)."""

    project: str
    hadoop_image: str
    spark_image: str
    datanodes: int
    replication: int
    worker_cores: int
    worker_memory_gb: int
    worker_container_memory_gb: int
    executor_cores: int
    executor_memory_gb: int
    bind_address: str
    namenode_ui_port: int
    spark_master_ui_port: int
    spark_worker_ui_port: int
    spark_history_ui_port: int
    startup_timeout: float
    job_time_limit_hours: float  # a client job still running then is stopped (Cluster.run_client)
    hosts: tuple[HostSpec, ...]  # empty: one Docker engine; else a swarm over these hosts
    swarm_address_pool: str  # the overlay's addresses (multi-host only)

    @property
    def executors(self) -> int:
        """Executors per worker."""
        return self.worker_cores // self.executor_cores

    def hosts_running(self, role: str) -> list[HostSpec]:
        return running(self.hosts, role)

    @property
    def manager(self) -> HostSpec | None:
        return next((host for host in self.hosts if host.manager), None)

    # ---- names: every container, volume, network, label and selector of a project, here only
    @property
    def network(self) -> str:
        return f"{self.project}-net"

    def container_name(self, service: str) -> str:
        return f"{self.project}-{service}"

    def volume_name(self, suffix: str) -> str:
        return f"{self.project}-{suffix}"

    def new_client_name(self) -> str:
        """A job's client container: unique, so jobs may run side by side."""
        return f"{self.project}-client-{uuid.uuid4().hex[:8]}"

    def labels(self, service: str | None = None) -> dict[str, str]:
        return {PROJECT_LABEL: self.project, **({SERVICE_LABEL: service} if service else {})}

    @property
    def selector(self) -> dict:
        """The filter that finds this project's containers, networks and volumes, and nothing else."""
        return {"label": f"{PROJECT_LABEL}={self.project}"}

    def selector_of(self, service: str) -> dict:
        """The filter that finds one service's containers of this project (a client, a task...)."""
        return {"label": [f"{key}={value}" for key, value in self.labels(service).items()]}

    @property
    def default_fs(self) -> str:
        return f"hdfs://namenode:{NAMENODE_RPC_PORT}"

    @property
    def master_url(self) -> str:
        return f"spark://spark-master:{SPARK_MASTER_PORT}"


@dataclasses.dataclass(frozen=True)
class Service:
    name: str  # also its hostname and network alias
    role: str  # namenode, datanode, spark-master, spark-worker, spark-history
    image: str
    command: list[str]
    environment: dict[str, str]
    cpus: float
    memory_gb: float
    healthcheck: list[str]
    stage: int  # start order: the kit starts stage 1 once stage 0 is healthy
    volumes: dict[str, str] = dataclasses.field(default_factory=dict)  # volume suffix -> path
    ui_port: int | None = None  # container port of its web UI
    host_port: int = 0  # 0: any free port on the host
    host: str | None = None  # the HostSpec it is placed on; None: the one engine

    def container_name(self, shape: ClusterShape) -> str:
        return shape.container_name(self.name)


def validate(shape: ClusterShape) -> None:
    problems = []
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,40}", shape.project):
        problems.append(f"cluster.project={shape.project!r}: use lower-case letters, digits, '-', '_' or '.'")
    if shape.datanodes < 1:
        problems.append("cluster.datanodes must be at least 1")
    if not 1 <= shape.replication <= shape.datanodes:
        problems.append(
            f"cluster.replication={shape.replication} needs 1..{shape.datanodes} "
            f"(cluster.datanodes={shape.datanodes}): a block cannot have more replicas than datanodes"
        )
    if shape.executor_cores < 1 or shape.executor_memory_gb < 1:
        problems.append("cluster.executor_cores and cluster.executor_memory_gb must be at least 1")
    elif shape.executor_cores > shape.worker_cores:
        problems.append(
            f"cluster.executor_cores={shape.executor_cores} exceeds cluster.worker_cores="
            f"{shape.worker_cores}: no executor could start"
        )
    elif shape.worker_cores % shape.executor_cores:
        problems.append(
            f"cluster.worker_cores={shape.worker_cores} is not a multiple of cluster.executor_cores="
            f"{shape.executor_cores}: cores would sit idle; make it a multiple"
        )
    elif shape.executors * shape.executor_memory_gb > shape.worker_memory_gb:
        problems.append(
            f"{shape.executors} executors x {shape.executor_memory_gb} GB do not fit in "
            f"cluster.worker_memory_gb={shape.worker_memory_gb}: raise it or lower the executors' memory"
        )
    if shape.worker_container_memory_gb < shape.worker_memory_gb + 1:
        problems.append(
            f"cluster.worker_container_memory_gb={shape.worker_container_memory_gb} leaves no room "
            f"beyond the executors' {shape.worker_memory_gb} GB: give it at least "
            f"{shape.worker_memory_gb + 1} (Python and JVM overhead live there too)"
        )
    for key in ("namenode_ui_port", "spark_master_ui_port", "spark_worker_ui_port", "spark_history_ui_port"):
        port = getattr(shape, key)
        if not 0 <= port <= 65535:
            problems.append(f"cluster.{key}={port} is not a port (0 picks a free one)")
    problems += host_problems(shape.hosts, shape.datanodes, shape.swarm_address_pool)
    if problems:
        raise TopologyError("the cluster shape cannot work:\n  - " + "\n  - ".join(problems))


# Every JVM of the cluster: without this each one samples its performance counters every 50 ms
# (for jstat, which the kit never runs). During 2-slot training both cores train, so any other
# work stalls one worker and the other waits for it at the next all-reduce.
QUIET_JVM_OPTS = "-XX:-UsePerfData"
# The daemons' JVMs (not the executors'): five of them start at once on a small host, and
# C2's compiler threads at start-up cost more CPU than its faster code ever saves a lab's daemons.
DAEMON_JVM_OPTS = f"-XX:TieredStopAtLevel=1 -XX:+UseSerialGC {QUIET_JVM_OPTS}"


def hdfs_client_environment(shape: ClusterShape) -> dict[str, str]:
    """Every HDFS client's settings: the Hadoop daemons' and the Spark JVMs' (event logs, a job's files)."""
    return {
        "CORE-SITE.XML_fs.defaultFS": shape.default_fs,
        # A client picks the replication of the files it creates: without this a Spark JVM writes
        # event logs and DataFrames with 3 replicas, which fsck reports under-replicated forever.
        "HDFS-SITE.XML_dfs.replication": str(shape.replication),
        # With two datanodes there is no spare to swap into a broken write pipeline; replacing one
        # fails the write ("Failed to replace a bad datanode") where carrying on with the rest works.
        "HDFS-SITE.XML_dfs.client.block.write.replace-datanode-on-failure.policy": "NEVER",
    }


def hadoop_environment(shape: ClusterShape) -> dict[str, str]:
    return {
        **hdfs_client_environment(shape),
        "HDFS-SITE.XML_dfs.namenode.name.dir": "file:///data/namenode",
        "HDFS-SITE.XML_dfs.datanode.data.dir": "file:///data/datanode",
        "HDFS-SITE.XML_dfs.namenode.rpc-bind-host": "0.0.0.0",
        "HDFS-SITE.XML_dfs.namenode.servicerpc-bind-host": "0.0.0.0",
        "HDFS-SITE.XML_dfs.namenode.http-bind-host": "0.0.0.0",
        # Datanodes register by container IP, which has no reverse DNS entry.
        "HDFS-SITE.XML_dfs.namenode.datanode.registration.ip-hostname-check": "false",
        # A lab cluster: leave safe mode 1 s after the block threshold is met, not 30 s.
        "HDFS-SITE.XML_dfs.namenode.safemode.extension": "1000",
        # Declare a stopped datanode dead after 20 s (2 rechecks + 10 heartbeats) rather than ~10
        # min: re-replication starts, and with two datanodes new blocks stop going through it
        # only then (block placement falls back to a stale datanode when too few fresh ones are left).
        "HDFS-SITE.XML_dfs.namenode.heartbeat.recheck-interval": "5000",
        "HDFS-SITE.XML_dfs.heartbeat.interval": "1",
        # A datanode silent for 4 s is stale: reads try it last and a block with one replica goes
        # elsewhere, so a lost datanode costs a retry, not a failed staging (replication 2 keeps
        # the data; jobs/lib/storage.py retries after this window, on one replica).
        "HDFS-SITE.XML_dfs.namenode.stale.datanode.interval": str(STALE_DATANODE_MS),
        "HDFS-SITE.XML_dfs.namenode.avoid.write.stale.datanode": "true",
        "HDFS-SITE.XML_dfs.namenode.avoid.read.stale.datanode": "true",
        # By default stale nodes stop being avoided once half the datanodes are stale: one of two is
        # half. With too few fresh nodes the namenode still falls back to stale ones.
        "HDFS-SITE.XML_dfs.namenode.write.stale.datanode.ratio": "1.0",
        # A block closed with one replica while the other datanode is stale is sent to copy to that
        # datanode (the same fallback); the copy fails and the namenode waits this long, 300 s by
        # default and checked as seldom, before it tries again: up to 10 min under-replicated after
        # the datanode is back. A lab's blocks copy in a second.
        "HDFS-SITE.XML_dfs.namenode.reconstruction.pending.timeout-sec": str(RECONSTRUCTION_RETRY_S),
        # The namenode's block-deletion thread sleeps this long between looks at its queue: 10 ms
        # by default, 100 wake-ups a second (4 ms of CPU a second here, idle or not). A lab deletes
        # a few hundred blocks at a time; half a second later frees them as soon as a heartbeat can.
        "HDFS-SITE.XML_dfs.namenode.block.deletion.unlock.interval.ms": "500",
        "HDFS_NAMENODE_OPTS": f"-Xmx768m {DAEMON_JVM_OPTS}",
        "HDFS_DATANODE_OPTS": f"-Xmx512m {DAEMON_JVM_OPTS}",
    }


def spark_environment(shape: ClusterShape) -> dict[str, str]:
    """Config for every Spark container; the client's spark-submit reads the same defaults."""
    events = f"{shape.default_fs}{HDFS_EVENTS_DIR}"
    defaults = {
        "spark.master": shape.master_url,
        "spark.executor.cores": str(shape.executor_cores),
        "spark.executor.memory": f"{shape.executor_memory_gb}g",
        # One barrier task per executor: a task takes all of its executor's cores.
        "spark.task.cpus": str(shape.executor_cores),
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        "spark.dynamicAllocation.enabled": "false",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events,
        "spark.history.fs.logDirectory": events,
        "spark.executorEnv.HADOOP_USER_NAME": "spark",
        "spark.executor.extraJavaOptions": QUIET_JVM_OPTS,
    }
    env = {f"SPARK-DEFAULTS.CONF_{key}": value for key, value in defaults.items()}
    env.update(hdfs_client_environment(shape))
    env["SPARK_DAEMON_MEMORY"] = "512m"
    env["SPARK_DAEMON_JAVA_OPTS"] = DAEMON_JVM_OPTS
    return env


def capped(requested: float, host_cpus: int) -> float:
    return float(min(requested, host_cpus))


def waits_for(shape: ClusterShape, check: str) -> dict[str, str]:
    """What a service's entrypoint waits for before it starts (images/common/healthcheck.py wait):
    everything starts at once, and a service that needs another starts the moment it can."""
    return {"KIT_WAIT_FOR": check, "KIT_WAIT_SECONDS": str(int(shape.startup_timeout))}


def plan(shape: ClusterShape, host_cpus: int) -> tuple[list[Service], list[str]]:
    """The services to run, in start order, and warnings (e.g. CPU limits capped to the host).

    With cluster.hosts each service is placed (Service.host): one datanode and one worker per
    host that runs them, named datanode-1.., spark-worker-1.. in the hosts' order."""
    validate(shape)
    warnings = []
    if shape.worker_cores > host_cpus:
        warnings.append(
            f"the worker offers {shape.worker_cores} cores but the host has {host_cpus}: "
            f"its CPU quota is capped at {host_cpus}, so executors share cores"
        )
    roles = Roles(shape, host_cpus)
    if not shape.hosts:
        services = [
            roles.namenode(),
            *(roles.datanode(index) for index in range(1, shape.datanodes + 1)),
            roles.master(),
            roles.worker("spark-worker"),
            roles.history(),
        ]
        return services, warnings

    def on(role: str) -> str:
        return shape.hosts_running(role)[0].name

    services = [dataclasses.replace(roles.namenode(), host=on("namenode"))]
    for index, host in enumerate(shape.hosts_running("datanode"), start=1):
        services.append(dataclasses.replace(roles.datanode(index), host=host.name))
    services.append(dataclasses.replace(roles.master(), host=on("spark-master")))
    for index, host in enumerate(shape.hosts_running("spark-worker"), start=1):
        worker = roles.worker(f"spark-worker-{index}")
        # a fixed UI port fits one worker: the others get free ones
        services.append(dataclasses.replace(worker, host=host.name, host_port=worker.host_port if index == 1 else 0))
    services.append(dataclasses.replace(roles.history(), host=on("spark-history")))
    return services, warnings


class Roles:
    """One Service per role, as `plan` places them."""

    def __init__(self, shape: ClusterShape, host_cpus: int):
        self.shape = shape
        self.host_cpus = host_cpus
        self.hadoop_env = hadoop_environment(shape)
        self.spark_env = spark_environment(shape)

    def namenode(self) -> Service:
        shape = self.shape
        return Service(
            name="namenode",
            role="namenode",
            image=shape.hadoop_image,
            command=["hdfs", "namenode"],
            environment=self.hadoop_env,
            cpus=capped(1, self.host_cpus),
            memory_gb=1.5,
            healthcheck=HEALTHCHECK + ["namenode", "9870", str(shape.datanodes)],
            stage=0,
            volumes={"namenode": "/data"},
            ui_port=9870,
            host_port=shape.namenode_ui_port,
        )

    def datanode(self, index: int) -> Service:
        return Service(
            name=f"datanode-{index}",
            role="datanode",
            image=self.shape.hadoop_image,
            command=["hdfs", "datanode"],
            environment=self.hadoop_env,
            cpus=capped(1, self.host_cpus),
            memory_gb=1.0,
            healthcheck=HEALTHCHECK + ["datanode", "9864"],
            stage=0,
            volumes={f"datanode-{index}": "/data"},
        )

    def master(self) -> Service:
        return Service(
            name="spark-master",
            role="spark-master",
            image=self.shape.spark_image,
            command=[
                "spark-class",
                "org.apache.spark.deploy.master.Master",
                "--host",
                "spark-master",
                "--port",
                str(SPARK_MASTER_PORT),
                "--webui-port",
                "8080",
            ],
            environment=self.spark_env,
            cpus=capped(1, self.host_cpus),
            memory_gb=1.0,
            healthcheck=HEALTHCHECK + ["spark-master", "8080"],
            stage=0,
            ui_port=8080,
            host_port=self.shape.spark_master_ui_port,
        )

    def worker(self, name: str) -> Service:
        shape = self.shape
        return Service(
            name=name,
            role="spark-worker",
            image=shape.spark_image,
            command=[
                "spark-class",
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                name,
                "--webui-port",
                "8081",
                "--cores",
                str(shape.worker_cores),
                "--memory",
                f"{shape.worker_memory_gb}g",
                "--work-dir",
                "/opt/spark/work",
                shape.master_url,
            ],
            environment={**self.spark_env, **waits_for(shape, f"port spark-master:{SPARK_MASTER_PORT}")},
            cpus=capped(shape.worker_cores, self.host_cpus),
            memory_gb=shape.worker_container_memory_gb,
            healthcheck=HEALTHCHECK + ["spark-worker", "http://spark-master:8080", name, str(shape.worker_cores)],
            stage=0,
            ui_port=8081,
            host_port=shape.spark_worker_ui_port,
        )

    def history(self) -> Service:
        shape = self.shape
        return Service(
            name="spark-history",
            role="spark-history",
            image=shape.spark_image,
            command=["spark-class", "org.apache.spark.deploy.history.HistoryServer"],
            environment={
                **self.spark_env,
                **waits_for(
                    shape,
                    "http " + shlex.quote(f"http://namenode:9870/webhdfs/v1{HDFS_EVENTS_DIR}?op=GETFILESTATUS&user.name=spark"),
                ),
            },
            cpus=capped(1, self.host_cpus),
            memory_gb=1.0,
            healthcheck=HEALTHCHECK + ["http", "http://localhost:18080/api/v1/applications"],
            stage=0,
            ui_port=18080,
            host_port=shape.spark_history_ui_port,
        )
