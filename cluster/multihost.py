"""The same cluster over several Docker hosts: each kit service a swarm service pinned to its host.

`plan` places the services (cluster.hosts); here they run as single-replica swarm services on
one attachable overlay, found by DNS on it under the same names as on one engine (namenode,
spark-master...), so every config and job is unchanged. Swarm restarts a task whose process
dies, on the host it is pinned to; readiness stays the kit's own probes, run in the task's
container on whichever host runs it. Clients (a job's driver) are plain containers on the
manager, attached to the overlay: executors on other hosts reach them by name.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from pathlib import Path

import docker
import docker.errors
import requests
from docker.types import Mount, Resources, RestartPolicy

from cluster import swarm, ui_forwarder
from cluster.hosts import HostSpec
from cluster.lifecycle import (
    SECOND_NS,
    Cluster,
    ClusterError,
    LiveClients,
    Say,
    host_cpus,
    memory_bytes,
    nano_cpus,
    one_line_at_a_time,
)
from cluster.readiness import wait_healthy
from cluster.topology import PROJECT_LABEL, ClusterShape, Service, plan, validate

ENGINE_SECONDS = 300  # one engine API call (an image load is one)
UI_LISTEN_BASE = 20000  # the forwarder's own ports, one per UI
REMOVAL_SECONDS = 60  # a removed service's containers gone, its volumes free


def connect(spec: HostSpec) -> docker.DockerClient:
    """The host's engine; an error names the host and what to check."""
    try:
        client = docker.DockerClient(
            base_url=spec.endpoint, use_ssh_client=spec.endpoint.startswith("ssh://"), timeout=ENGINE_SECONDS
        )
        client.ping()
    except Exception as error:  # docker raises several kinds (DockerException, ConnectionError...)
        raise ClusterError(
            f"host {spec.name}: the Docker engine at {spec.endpoint} did not answer ({error}): start Docker there, "
            "or fix cluster.hosts in invoke.yaml"
        ) from error
    return client


def open_cluster(shape: ClusterShape, client: docker.DockerClient) -> Cluster:
    """One engine's cluster, or a swarm's when cluster.hosts is set (client: the engine images are built in)."""
    return MultiHostCluster(shape, client) if shape.hosts else Cluster(shape, client)


class MultiHostCluster(Cluster):
    def __init__(self, shape: ClusterShape, client: docker.DockerClient, connect=connect):
        validate(shape)  # a wrong cluster.hosts is named before any host is asked
        self.shape = shape
        self.source = client  # the engine the images are built in
        self.healthy_at: dict[tuple, float] = {}
        self.live = LiveClients()
        self.hosts = {spec.name: swarm.SwarmHost(spec.name, connect(spec), spec.address, spec.mtu) for spec in shape.hosts}
        manager = shape.manager
        assert manager is not None  # plan's validation requires one
        self.manager = self.hosts[manager.name]
        self.client = self.manager.client  # clients, the overlay and the swarm's API live on the manager
        self.services, self.warnings = plan(shape, min(host_cpus(host.client) for host in self.hosts.values()))

    # ---- lookups -------------------------------------------------------------------------
    def engine(self, service: Service) -> docker.DockerClient:
        assert service.host is not None  # plan places every service when hosts are set
        return self.hosts[service.host].client

    def container(self, name: str):
        """The service's task container on its host: the running one, else the newest."""
        service = self.service(name)
        found = self.engine(service).containers.list(all=True, filters=self.shape.selector_of(name), ignore_removed=True)
        if not found:
            return None
        running = [c for c in found if c.status == "running"]
        return sorted(running or found, key=lambda c: c.attrs["Created"])[-1]

    def containers(self) -> list:
        return [
            c
            for host in self.hosts.values()
            for c in host.client.containers.list(all=True, filters=self.shape.selector, ignore_removed=True)
        ]

    def swarm_services(self) -> list:
        """The project's services; none when the manager is in no swarm (left, or never formed)."""
        swarm_state = self.client.info()["Swarm"]
        if swarm_state.get("LocalNodeState") != "active" or not swarm_state.get("ControlAvailable"):
            return []
        return self.client.services.list(filters={"label": f"{PROJECT_LABEL}={self.shape.project}"})

    # ---- up ------------------------------------------------------------------------------
    def up(self, say: Say = print) -> dict:
        """Idempotent: forms the swarm, copies what images a host lacks, creates missing services, and
        brings a service scaled to nothing back to one task; volumes are kept."""
        try:
            return self._up(say)
        except (swarm.SwarmError, docker.errors.DockerException, requests.RequestException) as error:
            raise ClusterError(f"the swarm over {', '.join(self.hosts)} could not be brought up: {error}") from error

    def _up(self, say: Say) -> dict:
        for warning in self.warnings:
            say(f"warning: {warning}")
        self._require_images()
        workers = [host for host in self.hosts.values() if host is not self.manager]
        nodes = swarm.form(self.manager, workers, self.shape.swarm_address_pool, say)
        image_ids = self._copy_images(say)
        network = swarm.overlay(self.manager, self.shape.network, list(self.hosts.values()), self.shape.labels())
        existing = {s.name: s for s in self.swarm_services()}
        planned = {service.container_name(self.shape) for service in self.services}
        for name in sorted(set(existing) - planned):  # a host no longer in cluster.hosts, a renamed role
            say(f"removing service {name}: cluster.hosts no longer places it")
            existing.pop(name).remove()
        started = time.monotonic()
        placed = []
        for service in self.services:
            found = existing.get(service.container_name(self.shape))
            if found is not None and not self._current(found, service, image_ids[service.image]):
                say(f"{service.name}: its image or settings changed: recreating it (its volume is kept)")
                found.remove()
                self._wait_task_gone(service)
                found = None
            if found is None:
                say(f"{service.name}: creating service {service.container_name(self.shape)} on {service.host}")
                found = swarm.place(
                    self.manager,
                    name=service.container_name(self.shape),
                    alias=service.name,
                    host=service.host or "",
                    image_id=image_ids[service.image],
                    network=network.name,
                    command=service.command,
                    **self.service_spec(service),
                )
            elif (found.attrs["Spec"].get("Mode", {}).get("Replicated") or {}).get("Replicas") != 1:
                say(f"{service.name}: back to one task on {service.host}")
                found.scale(1)
            placed.append((service, found))
        containers = []
        for service, found in placed:
            task = swarm.running_task(found, self.shape.startup_timeout - (time.monotonic() - started))
            host, container = swarm.task_container(self.hosts, nodes, task)
            if host != service.host:
                raise ClusterError(f"{service.name} runs on {host}, not on {service.host} as cluster.hosts places it")
            containers.append((service.name, container))
        self._ui_forwarder(network.name, image_ids[self.shape.spark_image], say)
        wait_healthy(
            containers,
            timeout=max(self.shape.startup_timeout - (time.monotonic() - started), 1),
            say=say,
            probe=self.probe,
            on_healthy={"namenode": lambda: self.prepare_hdfs(say)},
        )
        return self.status()

    def _current(self, found, service: Service, image_id: str) -> bool:
        """Whether a running service was made from this image, command, environment and limits (a rebuilt
        image, a changed setting such as cluster.replication)."""
        task = found.attrs["Spec"]["TaskTemplate"]
        container_spec, limits = task["ContainerSpec"], (task.get("Resources") or {}).get("Limits") or {}
        return (
            container_spec.get("Image", "").split("@")[0] == image_id
            and container_spec.get("Args") == service.command
            and sorted(container_spec.get("Env") or []) == sorted(self.service_spec(service)["env"])
            and (limits.get("NanoCPUs"), limits.get("MemoryBytes")) == (nano_cpus(service), memory_bytes(service))
        )

    def _wait_task_gone(self, service: Service) -> None:
        """A removed service's container, which holds its volume, gone from its host (bounded)."""
        deadline = time.monotonic() + REMOVAL_SECONDS
        while (container := self.container(service.name)) is not None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)
            if time.monotonic() > deadline:
                raise ClusterError(f"{service.name}: its old container {container.name} on {service.host} is still there")
            time.sleep(0.5)  # the engine removes it asynchronously

    def restart(self, service: str, say: Say = print) -> dict:
        """A new task of the service on its host (Swarm's way: restarting its container would have Swarm
        replace it behind the kit's back); volumes are kept."""
        found = [s for s in self.swarm_services() if s.name == self.shape.container_name(service)]
        if not found:
            raise ClusterError(f"{service} has no service: run './kit up'")
        started = time.monotonic()
        found[0].force_update()
        status = self.up(say)
        say(f"{service}: restarted, cluster healthy again in {time.monotonic() - started:.1f}s")
        return status

    def service_spec(self, service: Service) -> dict:
        """The swarm service's settings beyond placement: what Cluster.create_kwargs gives a container."""
        labels = self.shape.labels(service.name)
        return dict(
            env=[f"{key}={value}" for key, value in service.environment.items()],
            labels=labels,
            container_labels=labels,
            mounts=[
                Mount(path, self.shape.volume_name(suffix), type="volume", labels=self.shape.labels())
                for suffix, path in service.volumes.items()
            ],
            resources=Resources(cpu_limit=nano_cpus(service), mem_limit=memory_bytes(service)),
            # Swarm replaces a task whose process exits; readiness is the kit's probes, not a health
            # check that would have Swarm replace a namenode still in safe mode
            restart_policy=RestartPolicy(condition="any", delay=2 * SECOND_NS),
            stop_grace_period=30 * SECOND_NS,
        )

    def ui_routes(self) -> list[tuple[Service, int]]:
        """Each service with a web UI, and the forwarder port that reaches it."""
        return [(service, UI_LISTEN_BASE + index) for index, service in enumerate(s for s in self.services if s.ui_port)]

    def _ui_forwarder(self, network: str, image_id: str, say: Say) -> None:
        """The UIs on the manager's cluster.bind_address, through a plain container on the overlay."""
        routes = self.ui_routes()
        command = [
            "python3",
            "-c",
            Path(ui_forwarder.__file__).read_text(),
            *(f"{port}={s.name}:{s.ui_port}" for s, port in routes),
        ]
        for found in self.client.containers.list(all=True, filters=self.shape.selector_of("ui"), ignore_removed=True):
            if found.attrs["Config"]["Cmd"] == command and found.attrs["Image"] == image_id:
                if found.status != "running":
                    found.start()
                return
            found.remove(force=True)  # routes or image changed since it was made
        for service, _ in routes:
            self._check_port_free(service)
        name = self.shape.container_name("ui")
        say(f"ui: forwarding the web UIs to {self.shape.bind_address} on {self.manager.name} ({name})")
        self.client.containers.run(
            image_id,
            command,
            name=name,
            hostname="ui",
            labels=self.shape.labels("ui"),
            network=network,
            ports={f"{port}/tcp": (self.shape.bind_address, s.host_port or None) for s, port in routes},
            nano_cpus=SECOND_NS // 4,
            mem_limit="128m",
            restart_policy={"Name": "unless-stopped"},
            detach=True,
        )

    def _copy_images(self, say: Say) -> dict[str, str]:
        """Every image a host's services (and the manager's clients) need, by ID, on that host."""
        needs = {name: {s.image for s in self.services if s.host == name} for name in self.hosts}
        needs[self.manager.name].add(self.shape.spark_image)  # clients run on the manager

        say_whole = one_line_at_a_time(say)

        def copy(name: str) -> dict[str, str]:
            return {image: swarm.copy_image(self.source, image, self.hosts[name], say_whole) for image in sorted(needs[name])}

        with concurrent.futures.ThreadPoolExecutor(len(self.hosts)) as pool:
            copied = list(pool.map(copy, self.hosts))
        return {image: image_id for found in copied for image, image_id in found.items()}

    # ---- status --------------------------------------------------------------------------
    def status(self) -> dict:
        report = super().status()
        forwarder = self.client.containers.list(filters=self.shape.selector_of("ui"))
        bound = (forwarder[0].attrs["NetworkSettings"]["Ports"] or {}) if forwarder else {}
        uis = {
            s.name: f"http://{b[0]['HostIp']}:{b[0]['HostPort']}"
            for s, port in self.ui_routes()
            if (b := bound.get(f"{port}/tcp"))
        }
        for entry in report["services"]:
            entry["host"] = self.service(entry["name"]).host
            entry["ui"] = uis.get(entry["name"])
        report["hosts"] = {name: host.address for name, host in self.hosts.items()}
        return report

    # ---- down ----------------------------------------------------------------------------
    def down(self, volumes: bool = False, say: Say = print) -> list[str]:
        """Services, then what is left of their containers and the clients on every host, the overlay, and
        (with volumes) each host's volumes. The swarm itself stays: it is the hosts', like the engines."""
        failed: list[str] = []

        def attempt(what: str, action) -> None:
            try:
                action()
            except docker.errors.NotFound:
                pass  # gone already: what down wants
            except docker.errors.APIError as error:
                failed.append(f"{what}: {error.explanation or error}")

        for service in self.swarm_services():
            say(f"removing service {service.name}")
            attempt(f"service {service.name}", service.remove)
        for container in self.containers():
            attempt(f"container {container.name}", lambda c=container: self._remove_container(c))
        for network in self.client.networks.list(filters=self.shape.selector):
            attempt(
                f"network {network.name}",
                lambda n=network: self._once_free(n.remove, gone=lambda: not self.client.networks.list(filters={"id": n.id})),
            )
        if volumes:
            for name, host in self.hosts.items():
                for volume in host.client.volumes.list(filters=self.shape.selector):
                    say(f"removing volume {volume.name} on {name}")
                    attempt(f"volume {volume.name} on {name}", lambda v=volume: self._once_free(lambda: v.remove(force=True)))
        return failed

    @staticmethod
    def _remove_container(container) -> None:
        try:
            container.remove(force=True)
        except docker.errors.APIError as error:
            if error.status_code != 409 or "in progress" not in str(error):  # the engine removing it already
                raise

    def _once_free(self, remove, gone=lambda: True) -> None:
        """Remove what a removed service's task still holds (the overlay, a volume): the engines take its
        containers away in their own time, so theirs are removed here too, until REMOVAL_SECONDS.
        gone() tells when the removal has taken effect (the swarm removes an overlay asynchronously)."""
        deadline = time.monotonic() + REMOVAL_SECONDS
        removed = False
        while not (removed and gone()):
            if not removed:
                try:
                    remove()
                    removed = True
                except docker.errors.NotFound:
                    return
                except docker.errors.APIError:  # in use (409) or with active endpoints (403)
                    if time.monotonic() > deadline:
                        raise
                    for container in self.containers():
                        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):  # going already
                            container.remove(force=True)
            if time.monotonic() > deadline:
                return  # leftovers() names what is still there
            time.sleep(0.5)  # within the bounded wait above

    def leftovers(self) -> dict[str, list[str]]:
        selector = self.shape.selector
        found: dict[str, list[str]] = {
            "services": [s.name for s in self.swarm_services()],
            "networks": [],
            "containers": [],
            "volumes": [],
        }
        for name, host in self.hosts.items():
            found["containers"] += [
                f"{c.name} on {name}" for c in host.client.containers.list(all=True, filters=selector, ignore_removed=True)
            ]
            found["networks"] += [f"{n.name} on {name}" for n in host.client.networks.list(filters=selector)]
            found["volumes"] += [f"{v.name} on {name}" for v in host.client.volumes.list(filters=selector)]
        return found
