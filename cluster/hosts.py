"""The hosts of a multi-host cluster (cluster.hosts in invoke.yaml), and what is wrong with them.

Empty, the kit runs on one Docker engine; otherwise each host runs the roles it lists, one
datanode and one worker at most, so a block's replicas and a run's workers land on different
hosts. One host is the swarm's manager: the one `./kit` runs on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

ROLES = ("namenode", "datanode", "spark-master", "spark-worker", "spark-history")
SINGLE_ROLES = ("namenode", "spark-master", "spark-history")  # exactly one host runs each


@dataclasses.dataclass(frozen=True)
class HostSpec:
    """One Docker host of a multi-host cluster (an entry of cluster.hosts in invoke.yaml)."""

    name: str  # the kit's name for it: the swarm node's label, what services are placed by
    endpoint: str  # its Docker engine: unix:///var/run/docker.sock, ssh://user@host, tcp://...
    address: str  # where the other hosts reach it (swarm traffic: 2377/tcp, 7946, 4789/udp)
    runs: tuple[str, ...]  # its roles, from ROLES: at most one datanode and one worker per host
    manager: bool = False  # the swarm manager: the host `./kit` runs on, where clients and UIs live
    mtu: int = 1500  # its link's MTU toward the other hosts (a VPN or cloud LAN may have less)


def running(hosts: tuple[HostSpec, ...], role: str) -> list[HostSpec]:
    return [host for host in hosts if role in host.runs]


def host_problems(hosts: tuple[HostSpec, ...], datanodes: int, address_pool: str) -> list[str]:
    """What is wrong with cluster.hosts (nothing when it is empty: one engine); datanodes: cluster.datanodes."""
    if not hosts:
        return []
    problems = []
    names = [host.name for host in hosts]
    for host in hosts:
        where = f"cluster.hosts[{host.name!r}]"
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", host.name):
            problems.append(f"{where}: name it with lower-case letters, digits and '-'")
        if not re.match(r"(unix|ssh|tcp)://.+", host.endpoint):
            problems.append(f"{where}.endpoint={host.endpoint!r}: give unix:///path, ssh://user@host or tcp://host:port")
        unknown = sorted(set(host.runs) - set(ROLES))
        if unknown:
            problems.append(f"{where}.runs has {', '.join(unknown)}: roles are {', '.join(ROLES)}")
        if len(set(host.runs)) != len(host.runs):
            problems.append(f"{where}.runs names a role twice: a host runs at most one datanode and one worker")
        try:
            ipaddress.IPv4Address(host.address)
        except ValueError:
            problems.append(f"{where}.address={host.address!r}: give its IPv4 address on the hosts' network")
        if not 1280 <= host.mtu <= 65535:
            problems.append(f"{where}.mtu={host.mtu}: an IPv4 link's MTU, 1280 to 65535")
    for what, values in (
        ("names", names),
        ("endpoints", [h.endpoint for h in hosts]),
        ("addresses", [h.address for h in hosts]),
    ):
        if len(set(values)) != len(values):
            problems.append(f"cluster.hosts: {what} repeat ({', '.join(values)}): each host needs its own")
    managers = [host.name for host in hosts if host.manager]
    if len(managers) != 1:
        problems.append(
            f"cluster.hosts: {len(managers)} managers ({', '.join(managers) or 'none'}): mark exactly one manager: true"
        )
    for role in SINGLE_ROLES:
        placed = [host.name for host in running(hosts, role)]
        if len(placed) != 1:
            problems.append(
                f"cluster.hosts: {role} runs on {len(placed)} hosts ({', '.join(placed) or 'none'}): put it on exactly one"
            )
    datanode_hosts = len(running(hosts, "datanode"))
    if datanode_hosts != datanodes:
        problems.append(
            f"cluster.datanodes={datanodes} but {datanode_hosts} host(s) run a datanode: make them agree "
            "(one datanode per host, so a block's replicas land on different hosts)"
        )
    if not running(hosts, "spark-worker"):
        problems.append("cluster.hosts: no host runs spark-worker: training needs at least one")
    try:
        ipaddress.ip_network(address_pool)
    except ValueError:
        problems.append(f"cluster.swarm_address_pool={address_pool!r} is not a network such as 10.231.0.0/16")
    return problems
