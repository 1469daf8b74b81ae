"""Bring a planned cluster up on a Docker engine, report on it, and take it down.

Every container, network and volume carries the label ``dlkit.project=<project>``, so `down`
finds exactly what belongs to one cluster and two clusters never touch each other.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import math
import socket
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

import docker
import docker.errors

from cluster.readiness import HEALTH_INTERVAL, wait_healthy
from cluster.topology import HDFS_EVENTS_DIR, QUIET_JVM_OPTS, ClusterShape, Service, plan

SECOND_NS = 1_000_000_000
SPEC_LABEL = "dlkit.spec"  # spec_digest of the settings a container was made with
STOP_SECONDS = 30  # a job's time to clean up after Ctrl-C before it is killed
# Every job runs through this launcher in the Spark image (see images/spark/driver.py for why).
DRIVER = "/opt/kit/driver.py"
Say = Callable[[str], None]


PROBE_SECONDS = 20  # a health check that takes longer counts as a failed one
PROBE_REUSE_SECONDS = 30  # as fresh as Docker's checks were at their old 30 s interval
HDFS_CLI_SECONDS = 300  # an `hdfs` command in the namenode container (a JVM start is a few seconds)


def exec_bounded(container, command: list[str], seconds: float, what: str) -> tuple[int, bytes]:
    """docker exec with a time limit (coreutils `timeout` inside the container: the Docker API has none).

    Past it the command is stopped, and the error names what did not answer and its last output."""
    code, output = container.exec_run(["timeout", str(int(seconds)), *command])
    if code == 124:  # timeout's own code (137, a KILL, may be the kernel's out-of-memory killer: not ours)
        tail = [line for line in output.decode(errors="replace").splitlines() if line.strip()][-5:]
        raise ClusterError(f"{what} did not answer within {seconds:.0f}s; its last output: {' | '.join(tail) or '(none)'}")
    return code, output


class ClusterError(RuntimeError):
    """A cluster that cannot be brought up or used, with the next step in its message."""


def names_run(command: list[str], run_id: str) -> bool:
    """Whether a job's command line trains this run (--run-id RUN or --resume RUN)."""
    return any(flag in ("--run-id", "--resume") and value == run_id for flag, value in zip(command, command[1:]))


class JobTimeLimit(ClusterError):
    """A client job ran past its time limit: it was stopped like Ctrl-C stops it (its clean-up ran)."""

    def __init__(self, name: str, seconds: float):
        self.seconds = seconds
        super().__init__(f"{name} ran past its time limit of {seconds:.0f}s and was stopped (its clean-up ran)")


def one_line_at_a_time(say: Say) -> Say:
    """say, for several threads at once: their lines never interleave."""
    lock = threading.Lock()

    def say_whole(line: str) -> None:
        with lock:
            say(line)

    return say_whole


def nano_cpus(service: Service) -> int:
    return int(service.cpus * SECOND_NS)


def memory_bytes(service: Service) -> int:
    return int(service.memory_gb * 1024) * 1024**2


def spec_digest(kwargs: dict) -> str:
    """A digest of what a container is made with: the same on every `up` until a setting changes.
    Docker's own record of a container can differ from what was asked (limits an engine drops)."""
    made_with = {key: value for key, value in kwargs.items() if key not in ("networking_config", "labels")}
    return hashlib.sha256(json.dumps(made_with, sort_keys=True).encode()).hexdigest()[:16]


def made_as_planned(container, planned: dict, image_id: str) -> bool:
    """Whether a container was made from the image and settings the kit plans now: a rebuilt
    image, an edited setting or a newer kit would otherwise leave the old ones running."""
    labels = container.attrs["Config"].get("Labels") or {}
    return container.attrs["Image"] == image_id and labels.get(SPEC_LABEL) == planned["labels"][SPEC_LABEL]


def remove_container(container, name: str) -> None:
    try:
        container.remove(force=True)
    except docker.errors.APIError as error:
        raise ClusterError(f"{name}: its old container could not be removed: {error.explanation or error}") from error


def host_cpus(client: docker.DockerClient) -> int:
    return int(client.info().get("NCPU") or 1)


class LiveClients:
    """The client containers a Cluster's run_client streams now (several at once in a bench), and
    the stops asked of them: a client created before a stop is not started after it."""

    def __init__(self) -> None:
        self.containers: set = set()
        self.stopped: set[str] = set()  # ids of those a stop has reached
        self.stops = 0
        self.lock = threading.Lock()


class Cluster:
    def __init__(self, shape: ClusterShape, client: docker.DockerClient):
        self.shape = shape
        self.client = client  # where the services and clients run
        self.source = client  # where the images are built
        self.services, self.warnings = plan(shape, host_cpus(client))
        self.healthy_at: dict[tuple, float] = {}  # (container id, start time) -> when a probe last passed
        self.live = LiveClients()

    # ---- lookups -------------------------------------------------------------------------
    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(s.name for s in self.services)
        raise ClusterError(f"no service {name!r} in this cluster; services: {known}")

    def container(self, name: str):
        try:
            return self.client.containers.get(self.service(name).container_name(self.shape))
        except docker.errors.NotFound:
            return None

    def containers(self) -> list:
        return self.client.containers.list(all=True, filters=self.shape.selector)

    # ---- up ------------------------------------------------------------------------------
    def up(self, say: Say = print) -> dict:
        """Idempotent: starts what is stopped, creates what is missing, keeps volumes."""
        for warning in self.warnings:
            say(f"warning: {warning}")
        image_ids = self._require_images()
        network = self._network()
        jobs = self.running_clients()
        for stage in sorted({s.stage for s in self.services}):
            group = [s for s in self.services if s.stage == stage]
            # created and started side by side: each create is a few engine round trips
            say_whole = one_line_at_a_time(say)
            with concurrent.futures.ThreadPoolExecutor(len(group)) as pool:
                for done in [
                    pool.submit(self._start, service, network, say_whole, jobs, image_ids[service.image]) for service in group
                ]:
                    done.result()
            # the folders as soon as the namenode can make them: the history server waits for its own
            wait_healthy(
                [(s.name, self.container(s.name)) for s in group],
                timeout=self.shape.startup_timeout,
                say=say,
                probe=self.probe,
                on_healthy={"namenode": lambda: self.prepare_hdfs(say)},
            )
        return self.status()

    def restart(self, service: str, say: Say = print) -> dict:
        """Restart one service's container and wait until the whole cluster is healthy again.

        Volumes, and with them the namenode's cluster ID and every block, are kept.
        """
        container = self.container(service)
        if container is None:
            raise ClusterError(f"{service} has no container: run './kit up'")
        started = time.monotonic()
        container.restart(timeout=30)
        status = self.up(say)
        say(f"{service}: restarted, cluster healthy again in {time.monotonic() - started:.1f}s")
        return status

    def probe(self, name: str, container) -> tuple[bool, str]:
        """The service's health check, run now rather than at Docker's next interval."""
        try:
            code, output = exec_bounded(container, self.service(name).healthcheck[1:], PROBE_SECONDS, f"{name}'s health check")
        except docker.errors.APIError as error:
            return False, f"(probe failed: {error.explanation or error})"
        except ClusterError as error:
            return False, str(error)
        if code == 0:
            self.healthy_at[_started(container)] = time.monotonic()
        return code == 0, output.decode(errors="replace").strip()

    def _health_now(self, name: str, container) -> str:
        """The kit's check, run now unless one passed in the last PROBE_REUSE_SECONDS (a status
        right after `up`, or many in a row, would repeat them): Docker's own runs only every
        HEALTH_INTERVAL seconds."""
        if container.status != "running":
            return container.status
        if time.monotonic() - self.healthy_at.get(_started(container), -math.inf) < PROBE_REUSE_SECONDS:
            return "healthy"
        # a second try before a verdict: one slow answer on a busy host is not a broken service
        if self.probe(name, container)[0] or self.probe(name, container)[0]:
            return "healthy"
        return "starting" if _health(container)["Status"] == "starting" else "unhealthy"

    def _require_images(self) -> dict[str, str]:
        """Each image's id; one missing is an error naming the build to run."""
        ids, missing = {}, []
        for image in {self.shape.hadoop_image, self.shape.spark_image}:
            try:
                ids[image] = self.source.images.get(image).id
            except docker.errors.ImageNotFound:
                missing.append(image)
        if missing:
            raise ClusterError(f"image(s) {', '.join(sorted(missing))} not built yet: run './kit images.build'")
        return ids

    def _network(self):
        found = self.client.networks.list(names=[self.shape.network])
        if found:
            return found[0]
        return self.client.networks.create(
            self.shape.network, driver="bridge", labels=self.shape.labels(), check_duplicate=True
        )

    def _start(self, service: Service, network, say: Say, jobs: list[str], image_id: str) -> None:
        container = self.container(service.name)
        planned = self.create_kwargs(service, network.name)
        if container is not None and not made_as_planned(container, planned, image_id):
            if jobs:  # recreating the namenode or a worker would fail their runs
                say(
                    f"{service.name}: its image or settings changed since it was created, but {', '.join(jobs)} "
                    "is running: it keeps them until an 'up' with no job running"
                )
            else:
                kept = " (its volume is kept)" if service.volumes else ""
                say(f"{service.name}: its image or settings changed since it was created: recreating it{kept}")
                remove_container(container, service.name)
                container = None
        if container is not None and container.status == "running":
            return
        if container is not None:
            say(f"{service.name}: starting the existing container")
            container.start()
            return
        say(f"{service.name}: creating {service.container_name(self.shape)}")
        self._check_port_free(service)
        for suffix in service.volumes:
            self._volume(suffix)
        container = self.client.containers.create(**planned)
        try:
            container.start()
        except docker.errors.APIError as error:
            container.remove(force=True)
            raise ClusterError(f"{service.name} could not start: {error.explanation or error}") from error

    def _volume(self, suffix: str):
        name = self.shape.volume_name(suffix)
        try:
            return self.client.volumes.get(name)
        except docker.errors.NotFound:
            return self.client.volumes.create(name, labels=self.shape.labels())

    def _check_port_free(self, service: Service) -> None:
        if not service.ui_port or not service.host_port:
            return
        with socket.socket() as probe:
            try:
                probe.bind((self.shape.bind_address, service.host_port))
            except OSError as error:
                setting = f"{service.name.replace('-', '_')}_ui_port"
                raise ClusterError(
                    f"port {self.shape.bind_address}:{service.host_port} for the {service.name} UI is in use "
                    f"({error.strerror}): set cluster.{setting} to a free port, or 0 to pick one"
                ) from error

    def create_kwargs(self, service: Service, network: str) -> dict:
        name = service.container_name(self.shape)
        kwargs = dict(
            image=service.image,
            command=service.command,
            name=name,
            hostname=service.name,
            environment=service.environment,
            labels=self.shape.labels(service.name),
            network=network,
            networking_config={network: self.client.api.create_endpoint_config(aliases=[service.name])},
            volumes={self.shape.volume_name(suffix): {"bind": path, "mode": "rw"} for suffix, path in service.volumes.items()},
            nano_cpus=nano_cpus(service),
            mem_limit=memory_bytes(service),
            healthcheck={
                "test": service.healthcheck,
                "interval": HEALTH_INTERVAL * SECOND_NS,
                "timeout": 5 * SECOND_NS,
                "retries": 3,
                "start_period": 0,
            },
            restart_policy={"Name": "unless-stopped"},
            detach=True,
        )
        if service.ui_port:
            kwargs["ports"] = {f"{service.ui_port}/tcp": (self.shape.bind_address, service.host_port or None)}
        kwargs["labels"] = {**self.shape.labels(service.name), SPEC_LABEL: spec_digest(kwargs)}
        return kwargs

    # ---- HDFS layout -------------------------------------------------------------------------
    def prepare_hdfs(self, say: Say = print) -> None:
        """Create the folders jobs write to, owned by their user, in one WebHDFS round.

        One `docker exec` of curl calls instead of four `hdfs dfs` JVMs saves about 8 s of `up`.
        In safe mode the namenode refuses MKDIRS, and that refusal is what the error shows.
        """
        container = self.container("namenode")
        if container is None:
            raise ClusterError("the namenode container does not exist: run './kit up'")
        code, output = exec_bounded(container, ["sh", "-c", hdfs_folders_script()], 120, "preparing the HDFS folders")
        if code != 0:
            raise ClusterError(f"preparing HDFS folders failed (exit code {code}):\n{output.decode(errors='replace')[-3000:]}")
        say("hdfs: out of safe mode; /spark-events, /user/spark, /data, /runs and /tmp ready")

    def hdfs(self, args: list[str], check: bool = True, seconds: float = HDFS_CLI_SECONDS) -> str:
        """Run the hdfs CLI in the namenode container (as the HDFS superuser), for at most `seconds`."""
        container = self.container("namenode")
        if container is None:
            raise ClusterError("the namenode container does not exist: run './kit up'")
        code, output = exec_bounded(container, ["hdfs", *args], seconds, f"'hdfs {' '.join(args)}'")
        text = output.decode(errors="replace")
        if check and code != 0:
            raise ClusterError(f"'hdfs {' '.join(args)}' failed with exit code {code}:\n{text[-3000:]}")
        return text

    def webhdfs_read(self, path: str, user: str = "spark") -> str | None:
        """A small HDFS file's text through WebHDFS (no JVM to start), or None when it does not exist."""
        container = self._running("namenode")
        url = f"http://localhost:9870/webhdfs/v1{quote(path)}?op=OPEN&user.name={quote(user, safe='')}"
        command = ["curl", "-sS", "-L", "--max-time", "30", "-w", "\n%{http_code}", url]
        code, output = exec_bounded(container, command, 40, f"WebHDFS reading {path}")
        body, _, status = output.decode(errors="replace").rpartition("\n")
        if code == 0 and status == "404":
            return None
        if code != 0 or status != "200":
            raise ClusterError(
                f"reading {path} from HDFS through WebHDFS failed (curl exit {code}, HTTP {status}):\n{body[-1000:]}"
            )
        return body

    def webhdfs_list(self, path: str, user: str = "spark") -> list[dict]:
        """The entries of an HDFS folder (WebHDFS FileStatus: pathSuffix, type...), [] when it does not exist."""
        container = self._running("namenode")
        url = f"http://localhost:9870/webhdfs/v1{quote(path)}?op=LISTSTATUS&user.name={quote(user, safe='')}"
        command = ["curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}", url]
        code, output = exec_bounded(container, command, 40, f"WebHDFS listing {path}")
        body, _, status = output.decode(errors="replace").rpartition("\n")
        if code == 0 and status == "404":
            return []
        if code != 0 or status != "200":
            raise ClusterError(f"listing {path} through WebHDFS failed (curl exit {code}, HTTP {status}):\n{body[-1000:]}")
        return json.loads(body)["FileStatuses"]["FileStatus"]

    def hdfs_leftovers(self, data_root: str, runs_root: str) -> dict[str, list[str]]:
        """What killed jobs left in HDFS: copies of a staging never swapped in or never retired (the next
        `stage` also finishes or undoes them), and run folders never completed (each can be resumed)."""
        parent, name = data_root.rstrip("/").rsplit("/", 1)
        beside = [e["pathSuffix"] for e in self.webhdfs_list(parent or "/")]
        runs = [e["pathSuffix"] for e in self.webhdfs_list(runs_root) if e["type"] == "DIRECTORY"]
        copies = [f"{parent}/{n}" for n in sorted(beside) if n.startswith((f"{name}.staging-", f"{name}.retired-"))]
        swapping = name not in beside  # killed between the swap's renames: a copy is the data; `stage` finishes it
        return {
            "staging": [] if swapping else copies,
            "interrupted_swap": copies if swapping else [],
            "interrupted_runs": sorted(n.removesuffix(".partial") for n in runs if n.endswith(".partial")),
        }

    def running_clients(self, mentioning: str | None = None) -> list[str]:
        """Names of this project's client containers still running (a job in progress).

        mentioning: only those whose command has this word (a run ID), e.g. the driver of a run
        whose `invoke` was killed: the container carries on without it."""
        selector = {**self.shape.selector_of("client"), "status": "running"}
        containers = self.client.containers.list(filters=selector, ignore_removed=True)
        return [c.name for c in containers if mentioning is None or names_run(c.attrs["Config"].get("Cmd") or [], mentioning)]

    def _running(self, service: str):
        container = self.container(service)
        if container is None or container.status != "running":
            raise ClusterError(f"{service} is not running")
        return container

    def fetch_json(self, service: str, url: str) -> dict:
        container = self._running(service)
        code, output = exec_bounded(container, ["curl", "-fsS", "--max-time", "5", url], 15, f"{service}: {url}")
        if code != 0:
            raise ClusterError(f"{service}: {url} did not answer: {output.decode(errors='replace')[:300]}")
        return json.loads(output)

    # ---- status --------------------------------------------------------------------------
    def status(self) -> dict:
        for container in self.containers():
            container.reload()
        containers = {service.name: self.container(service.name) for service in self.services}
        # the checks side by side: each is a docker exec of a fraction of a second
        with concurrent.futures.ThreadPoolExecutor(len(containers)) as pool:
            health = dict(zip(containers, pool.map(lambda item: item[1] and self._health_now(*item), containers.items())))
        services = []
        for service in self.services:
            container = containers[service.name]
            entry = {
                "name": service.name,
                "container": service.container_name(self.shape),
                "state": container.status if container else "missing",
                "health": health[service.name],
                "ui": None,
            }
            if container is not None and service.ui_port:
                bound = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{service.ui_port}/tcp")
                if bound:
                    entry["ui"] = f"http://{bound[0]['HostIp']}:{bound[0]['HostPort']}"
            services.append(entry)
        return {
            "project": self.shape.project,
            "network": self.shape.network,
            "services": services,
            "hdfs": self._hdfs_status(),
            "spark": self._spark_status(),
        }

    def _hdfs_status(self) -> dict:
        try:
            query = "http://localhost:9870/jmx?qry=Hadoop:service=NameNode,name="
            state = self.fetch_json("namenode", query + "FSNamesystemState")["beans"][0]
            info = self.fetch_json("namenode", query + "NameNodeInfo")["beans"][0]
        except (ClusterError, KeyError, IndexError, ValueError) as error:
            return {"available": False, "error": str(error), "live_datanodes": 0}
        return {
            "available": True,
            "url": self.shape.default_fs,
            "safemode": info.get("Safemode") or "OFF",
            "live_datanodes": state.get("NumLiveDataNodes", 0),
            "dead_datanodes": state.get("NumDeadDataNodes", 0),
            "under_replicated_blocks": state.get("UnderReplicatedBlocks", 0),
            "capacity_bytes": state.get("CapacityTotal"),
            "used_bytes": state.get("CapacityUsed"),
            "remaining_bytes": state.get("CapacityRemaining"),
            "files_and_dirs": state.get("FilesTotal"),
        }

    def _spark_status(self) -> dict:
        try:
            master = self.fetch_json("spark-master", "http://localhost:8080/json/")
        except (ClusterError, ValueError) as error:
            return {"available": False, "error": str(error), "workers": []}
        workers = [
            {
                "host": w.get("host"),
                "state": w.get("state"),
                "cores": w.get("cores"),
                "cores_used": w.get("coresused"),
                "memory_mb": w.get("memory"),
            }
            for w in master.get("workers", [])
        ]
        return {
            "available": True,
            "master": self.shape.master_url,
            "status": master.get("status"),
            "alive_workers": master.get("aliveworkers"),
            "cores": master.get("cores"),
            "workers": workers,
            "executor_cores": self.shape.executor_cores,
            "executor_slots": sum(w["cores"] // self.shape.executor_cores for w in workers if w["state"] == "ALIVE"),
        }

    # ---- down ----------------------------------------------------------------------------
    def down(self, volumes: bool = False, say: Say = print) -> list[str]:
        """Removes all it can, carrying on past a step that fails; returns what could not be removed."""
        failed: list[str] = []
        selector = self.shape.selector

        def remove(kind: str, item, **kwargs) -> None:
            try:
                item.remove(**kwargs)
            except docker.errors.NotFound:
                pass  # gone already: what down wants
            except docker.errors.APIError as error:
                failed.append(f"{kind} {item.name}: {error.explanation or error}")

        containers = self.containers()
        for container in containers:
            say(f"removing {container.name}")
        with concurrent.futures.ThreadPoolExecutor(max(1, len(containers))) as pool:
            list(pool.map(lambda container: remove("container", container, force=True), containers))
        for network in self.client.networks.list(filters=selector):
            remove("network", network)
        if volumes:
            for volume in self.client.volumes.list(filters=selector):
                say(f"removing volume {volume.name}")
                remove("volume", volume, force=True)
        return failed

    def leftovers(self) -> dict[str, list[str]]:
        selector = self.shape.selector
        return {
            "containers": [c.name for c in self.client.containers.list(all=True, filters=selector)],
            "networks": [n.name for n in self.client.networks.list(filters=selector)],
            "volumes": [v.name for v in self.client.volumes.list(filters=selector)],
        }

    # ---- clients -------------------------------------------------------------------------
    def client_kwargs(
        self,
        command: list[str],
        project_dir: Path | None = None,
        mounts: dict[str, str] | None = None,
        cpus: float | None = None,
    ) -> dict:
        """A spark-submit container on the cluster network: the driver never runs on the host.

        project_dir is mounted read-only at /opt/dlkit (and put on PYTHONPATH); mounts maps
        further host folders to read-only container paths.
        """
        name = self.shape.new_client_name()
        environment = dict(self.service("spark-master").environment)
        environment["SPARK-DEFAULTS.CONF_spark.driver.host"] = name
        environment["SPARK-DEFAULTS.CONF_spark.driver.bindAddress"] = "0.0.0.0"
        environment["SPARK-DEFAULTS.CONF_spark.driver.extraJavaOptions"] = (
            f"-Dlog4j.configurationFile=file:/opt/kit/log4j2-driver.properties {QUIET_JVM_OPTS}"
        )
        volumes = {str(host): {"bind": inside, "mode": "ro"} for host, inside in (mounts or {}).items()}
        kwargs: dict[str, Any] = dict(
            image=self.shape.spark_image,
            command=command,
            name=name,
            hostname=name,
            environment=environment,
            labels=self.shape.labels("client"),
            network=self.shape.network,
            nano_cpus=int((cpus or min(2, host_cpus(self.client))) * SECOND_NS),
            mem_limit="3g",
            detach=True,
            volumes=volumes,
        )
        if project_dir is not None:
            volumes[str(project_dir)] = {"bind": "/opt/dlkit", "mode": "ro"}
            kwargs["working_dir"] = "/opt/dlkit"
            environment["PYTHONPATH"] = "/opt/dlkit"
        return kwargs

    def run_client(
        self,
        command: list[str],
        project_dir: Path | None = None,
        out: Callable[[str], None] = print,
        mounts: dict[str, str] | None = None,
        collect: tuple[str, Path] | None = None,
        cpus: float | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run a client container to completion, streaming its output; returns its exit code.

        collect=(container folder, host folder) copies what the job wrote there out to the host
        before the container is removed, so no host folder has to be writable by its user.
        timeout: seconds after which the job is stopped as Ctrl-C stops it (SIGTERM, its clean-up,
        SIGKILL after STOP_SECONDS); JobTimeLimit is raised then, after its last words are shown.
        By default the shape's job time limit.
        """
        timeout = timeout or self.shape.job_time_limit_hours * 3600
        if self.container("spark-master") is None:
            raise ClusterError(f"cluster {self.shape.project!r} is not up: run './kit up' first")
        stops_before = self.live.stops
        container = self.client.containers.create(**self.client_kwargs(command, project_dir, mounts, cpus))
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            container.stop(timeout=STOP_SECONDS)  # the log stream below ends with its last words

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        try:
            with self.live.lock:  # stop_clients either sees this container running or it never starts
                if self.live.stops != stops_before:
                    return 130  # stopped before it started, as by Ctrl-C
                container.start()
                self.live.containers.add(container)
            watchdog.start()
            try:
                for line in _lines(container.logs(stream=True, follow=True)):
                    out(line)
            except KeyboardInterrupt:
                # the job gets SIGTERM and runs its clean-up (SIGKILL after STOP_SECONDS); its last words shown
                out(f"kit: interrupted: stopping {container.name} (its clean-up runs, up to {STOP_SECONDS}s)")
                since = int(time.time())
                container.stop(timeout=STOP_SECONDS)
                for line in _lines([container.logs(since=since - 1)]):
                    out(line)
                raise
            try:
                code = int(container.wait(timeout=STOP_SECONDS + 30)["StatusCode"])
            except Exception as error:  # its log stream ended, yet it did not exit
                raise ClusterError(f"{container.name} stopped sending output but did not exit: {error}") from error
            if expired.is_set() and code:  # not a job that ended by itself as the limit came
                raise JobTimeLimit(container.name, timeout)
            if collect is not None and code == 0:
                copy_out(container, *collect)
            return code
        finally:
            watchdog.cancel()
            container.remove(force=True)
            self.live.containers.discard(container)

    def stop_clients(self, out: Callable[[str], None] = print) -> None:
        """Ctrl-C while several jobs run at once, each streamed by run_client in a thread of its own
        (only the main thread hears the Ctrl-C), or one of them failed: every job gets SIGTERM and
        runs its clean-up, SIGKILL after STOP_SECONDS. Their streams then end, and run_client
        removes the containers; one created but not yet started never starts. Asked again, it stops
        only those that started since (a job that was still starting up when first asked)."""
        with self.live.lock:
            self.live.stops += 1
            containers = [c for c in self.live.containers if c.id not in self.live.stopped]
            self.live.stopped.update(c.id for c in containers)
        for container in containers:
            out(f"kit: stopping {container.name} (its clean-up runs, up to {STOP_SECONDS}s)")
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
            for stopped in [pool.submit(container.stop, timeout=STOP_SECONDS) for container in containers]:
                try:
                    stopped.result()
                except docker.errors.APIError:  # it ended and was removed meanwhile
                    continue


JOB_FOLDERS = (HDFS_EVENTS_DIR, "/user/spark", "/data", "/runs")


def hdfs_folders_script(user: str = "spark", superuser: str = "hadoop") -> str:
    """curl calls to the namenode's WebHDFS: the job folders owned by the job user, a sticky /tmp.

    The superuser is the namenode's own process user (simple authentication takes user.name)."""
    base = "http://localhost:9870/webhdfs/v1"
    calls = [f"{base}{quote(path)}?op=MKDIRS" for path in (*JOB_FOLDERS, "/tmp")]
    calls += [
        f"{base}{quote(path)}?op=SETOWNER&owner={quote(user, safe='')}&group={quote(user, safe='')}" for path in JOB_FOLDERS
    ]
    calls += [f"{base}/tmp?op=SETPERMISSION&permission=1777"]
    return "set -e; " + "; ".join(
        f"curl -sS --fail-with-body --max-time 20 -X PUT '{url}&user.name={superuser}'" for url in calls
    )


def diagnose(report: dict) -> str | None:
    """One line on what is wrong with a cluster and what to do, or None when it is healthy."""
    services = report["services"]
    missing = [s["name"] for s in services if s["state"] == "missing"]
    stopped = [s["name"] for s in services if s["state"] not in ("missing", "running")]
    sick = [s["name"] for s in services if s["state"] == "running" and s["health"] not in ("healthy", None)]
    if len(missing) == len(services):
        return "the cluster is not up: run './kit up'"
    if missing or stopped:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"stopped {', '.join(stopped)}"] if stopped else [])
        return (
            f"the cluster is half-started ({'; '.join(parts)}): './kit up' starts what is missing and keeps the "
            "data; './kit down' then './kit up' starts afresh"
        )
    if sick:
        return (
            f"{', '.join(sick)} not healthy yet: wait, or see './kit logs {sick[0]}'; "
            f"'./kit restart {sick[0]}' restarts it keeping the data"
        )
    hdfs = report["hdfs"]
    if hdfs.get("available") and hdfs.get("dead_datanodes"):
        return f"{hdfs['dead_datanodes']} datanode(s) dead: './kit up' starts stopped ones again"
    return None


def space_problem(report: dict, needed_bytes: int) -> str | None:
    """A clear refusal when HDFS lacks room for a write of needed_bytes (replicas included)."""
    hdfs = report["hdfs"]
    if not hdfs.get("available") or hdfs.get("remaining_bytes") is None:
        return None  # the health checks report an unavailable HDFS on their own
    if hdfs["remaining_bytes"] >= needed_bytes:
        return None
    return (
        f"HDFS has {hdfs['remaining_bytes'] / 1e9:.2f} GB free but this needs about {needed_bytes / 1e9:.2f} GB "
        "(replicas included): free space on the Docker host (docker system df), remove old runs "
        "('./kit submit' with hdfs dfs -rm), or lower cluster.replication"
    )


def copy_out(container, inside: str, host_dir: Path) -> None:
    """Extract a container folder's content into host_dir (its top folder name dropped)."""
    stream, _ = container.get_archive(inside)
    buffer = io.BytesIO(b"".join(stream))
    host_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=buffer) as archive:
        members = []
        for member in archive.getmembers():
            _, _, rest = member.name.partition("/")
            if rest:
                member.name = rest
                members.append(member)
        archive.extractall(host_dir, members=members, filter="data")


def _started(container) -> tuple[str, str]:
    """A container's identity in one life: a restart makes its earlier probes stale."""
    return container.id, (container.attrs.get("State") or {}).get("StartedAt", "")


def _health(container) -> dict:
    return container.attrs.get("State", {}).get("Health") or {"Status": "none", "Log": []}


def _lines(chunks: Iterable[bytes]):
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")
