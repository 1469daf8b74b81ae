"""Docker Swarm over several engines: the substrate the multi-host cluster stands on.

One manager, the other engines joined as workers, every node labelled with the kit's name for
its host (never placed by hostname: hosts made as network namespaces share one), and one
attachable overlay network per project. The overlay's MTU option is the underlay's: the driver
takes the 50 bytes of VXLAN off it itself, so containers get the smallest host MTU less 50.
Services publish nothing and resolve by DNS round robin (`dnsrr`): a virtual IP needs IPVS,
which kernels without `ip_vs` lack, and Swarm would publish ports on every address.
Images travel by `save`/`load` and keep their ID, so services named by ID never ask a registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors
from docker.types import EndpointSpec, NetworkAttachmentConfig, ServiceMode

HOST_LABEL = "dlkit.host"
SWARM_PORT = 2377
VXLAN_OVERHEAD = 50  # bytes the overlay driver takes off the underlay MTU


class SwarmError(RuntimeError):
    """A swarm that cannot be formed or used, with what did not answer."""


@dataclass(frozen=True)
class SwarmHost:
    name: str  # the kit's name for it: node label, placement
    client: docker.DockerClient
    address: str  # where the other hosts reach it
    mtu: int  # its link's MTU toward the others


def underlay_mtu(hosts: list[SwarmHost]) -> int:
    """The overlay's MTU option: the smallest host link (the driver takes the VXLAN header off it)."""
    return min(h.mtu for h in hosts)


def container_mtu(hosts: list[SwarmHost]) -> int:
    """What a container on the overlay gets: the smallest host link less the VXLAN header."""
    return underlay_mtu(hosts) - VXLAN_OVERHEAD


def node_id(host: SwarmHost) -> str:
    return host.client.info()["Swarm"]["NodeID"]


def form(manager: SwarmHost, workers: list[SwarmHost], address_pool: str, say: Callable[[str], None] = print) -> dict[str, str]:
    """Initialise (or reuse) the swarm on manager, join the workers, label every node: {host: node ID}."""
    if manager.client.info()["Swarm"]["LocalNodeState"] != "active":
        manager.client.swarm.init(
            advertise_addr=manager.address,
            listen_addr=f"{manager.address}:{SWARM_PORT}",
            default_addr_pool=[address_pool],
            subnet_size=24,
        )
        say(f"swarm: initialised on {manager.name} ({manager.address})")
    manager.client.swarm.reload()
    token = manager.client.swarm.attrs["JoinTokens"]["Worker"]
    for worker in workers:
        if worker.client.info()["Swarm"]["LocalNodeState"] != "active":
            worker.client.swarm.join(
                remote_addrs=[f"{manager.address}:{SWARM_PORT}"],
                join_token=token,
                advertise_addr=worker.address,
                listen_addr=f"{worker.address}:{SWARM_PORT}",
            )
            say(f"swarm: {worker.name} ({worker.address}) joined")
    nodes = {host.name: node_id(host) for host in [manager, *workers]}
    for name, node in nodes.items():
        label_node(manager.client, node, name)
    return nodes


def label_node(client: docker.DockerClient, node: str, host: str, attempts: int = 5) -> None:
    """The node's spec with the host label; the whole spec goes back (missing keys are removed)."""
    for attempt in range(attempts):
        found = client.nodes.get(node)
        spec = dict(found.attrs["Spec"])
        if spec.get("Labels", {}).get(HOST_LABEL) == host:
            return
        spec["Labels"] = {**spec.get("Labels", {}), HOST_LABEL: host}
        try:
            found.update(spec)
            return
        except docker.errors.APIError as error:  # "update out of sequence": another writer came first
            if "out of sequence" not in str(error) or attempt == attempts - 1:
                raise


def overlay(manager: SwarmHost, name: str, hosts: list[SwarmHost], labels: dict[str, str]):
    """The project's attachable overlay (created on the manager only: workers see it once attached)."""
    found = [n for n in manager.client.networks.list(names=[name]) if n.name == name]  # names= matches substrings
    if found:
        return found[0]
    return manager.client.networks.create(
        name,
        driver="overlay",
        attachable=True,
        options={"com.docker.network.driver.mtu": str(underlay_mtu(hosts))},
        labels=labels,
    )


def copy_image(source: docker.DockerClient, image: str, target: SwarmHost, say: Callable[[str], None] = print) -> str:
    """The image by ID on target, copied with save/load only when it lacks it, and tagged; returns the full ID."""
    image_id = source.images.get(image).id
    try:
        copied = target.client.images.get(image_id)
    except docker.errors.ImageNotFound:
        started = time.monotonic()
        for _ in target.client.api.load_image(source.api.get_image(image_id, chunk_size=1 << 20)):
            pass
        try:
            copied = target.client.images.get(image_id)
        except docker.errors.ImageNotFound:
            raise SwarmError(
                f"{image} loaded on {target.name} under another ID than {image_id[:19]} (an image store that "
                "recomputes IDs, such as containerd's?): services name images by ID"
            ) from None
        say(f"swarm: {image} copied to {target.name} in {time.monotonic() - started:.0f}s")
    if image not in copied.tags:  # saved by ID, it comes untagged: clients are created by name
        copied.tag(image)
    return image_id


def place(
    manager: SwarmHost, *, name: str, host: str, image_id: str, network: str, command: list[str], alias: str = "", **spec
):
    """One single-replica service pinned to host, reachable on the overlay by its alias (default: its name; dnsrr)."""
    alias = alias or name
    return manager.client.services.create(
        image=image_id,
        args=command,  # Command would replace the image's entrypoint (its config rendering)
        name=name,
        hostname=alias,
        networks=[NetworkAttachmentConfig(network, aliases=[alias])],
        endpoint_spec=EndpointSpec(mode="dnsrr"),
        mode=ServiceMode("replicated", replicas=1),
        constraints=[f"node.labels.{HOST_LABEL} == {host}"],
        **spec,
    )


def running_task(service, seconds: float) -> dict:
    """The service's running task, within seconds; else an error with the task's own last state."""
    deadline = time.monotonic() + seconds
    last: dict = {}
    while time.monotonic() < deadline:
        service.reload()
        tasks = service.tasks(filters={"desired-state": "running"})  # not one being replaced
        for task in tasks:
            if task["Status"]["State"] == "running":
                return task
        last = max(tasks, key=lambda t: t["UpdatedAt"])["Status"] if tasks else {}  # tasks come in no order
        time.sleep(0.5)  # between polls of the manager, within the bounded wait
    raise SwarmError(
        f"service {service.name} had no running task within {seconds:.0f}s; its last task: "
        f"{last.get('State', 'none')} {last.get('Err') or last.get('Message') or ''}".rstrip()
    )


def task_container(hosts: dict[str, SwarmHost], nodes: dict[str, str], task: dict):
    """The container a task runs in, on whichever host's engine runs it."""
    host = next((name for name, node in nodes.items() if node == task["NodeID"]), None)
    if host is None:
        raise SwarmError(f"a task runs on swarm node {task['NodeID']}, which is none of the hosts {', '.join(nodes)}")
    return host, hosts[host].client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
