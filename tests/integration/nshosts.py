"""Docker hosts on one machine: a network namespace and a dockerd per host, on a bridge of their own.

Each host's link has MTU 1400 (a VPN or cloud LAN, below the 1500 the overlay assumes), and
all traffic stays in the namespaces made here. dockerd is started with `nsenter --net` (not
`ip netns exec`, whose private /sys hides the cgroup mounts: moby/moby#21090), with its own data
root, exec root, pid file, socket and containerd namespace. Data roots stay between runs under
DATA_ROOT (so images are copied once), guarded by a lock: one multi-host test at a time.
Teardown stops the daemons by pid, their shims by exec root, unmounts what they left and
removes the namespaces, also when the test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

DATA_ROOT = Path("/var/lib/dlkit-nshosts")
PREFIX = "dkns"  # every namespace, link and exec root made here starts with it
SUBNET = "198.18.0"  # RFC 2544 benchmark addresses: clear of Docker's pools and the host's LAN
LINK_MTU = 1400
START_SECONDS = 60


@dataclass
class NamespaceHost:
    name: str
    netns: str
    address: str
    exec_root: str
    data_root: Path
    process: subprocess.Popen | None = None
    log: Path | None = None
    lock: object = field(default=None, repr=False)

    @property
    def socket(self) -> str:
        return f"unix://{self.exec_root}.sock"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.socket, timeout=300)


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=60)


def usable() -> str | None:
    """Why namespace hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "namespace hosts need root (network namespaces, dockerd)"
    missing = [tool for tool in ("nsenter", "ip", "dockerd") if not shutil.which(tool)]
    return f"namespace hosts need {', '.join(missing)}" if missing else None


@contextlib.contextmanager
def namespace_hosts(count: int = 2, say=print) -> Iterator[list[NamespaceHost]]:
    """count hosts h1..hN at SUBNET.11.., each with a dockerd that answers; all gone afterwards."""
    tag = uuid.uuid4().hex[:4]
    bridge = f"{PREFIX}{tag}br"
    hosts = [
        NamespaceHost(
            name=f"h{i}",
            netns=f"{PREFIX}{tag}h{i}",
            address=f"{SUBNET}.{10 + i}",
            exec_root=f"/run/{PREFIX}{tag}h{i}",
            data_root=DATA_ROOT / f"h{i}",
        )
        for i in range(1, count + 1)
    ]
    try:
        for host in hosts:
            lock(host)
        remove_leftovers()
        run("ip", "netns", "add", bridge)
        run("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", bridge, "link", "set", "br0", "up")
        for i, host in enumerate(hosts, 1):
            wire(host, bridge, f"{PREFIX}{tag}{i}")
        for host in hosts:
            start_dockerd(host)
        for host in hosts:
            wait_for_dockerd(host)
        say(f"nshosts: {count} hosts up ({', '.join(f'{h.name} {h.address}' for h in hosts)}), link MTU {LINK_MTU}")
        yield hosts
    finally:
        for host in hosts:
            stop_dockerd(host)
        for name in [h.netns for h in hosts] + [bridge]:
            run("ip", "netns", "del", name, check=False)
        for host in hosts:
            if host.lock is not None:
                host.lock.close()  # type: ignore[attr-defined]


def lock(host: NamespaceHost) -> None:
    host.data_root.mkdir(parents=True, exist_ok=True)
    handle = open(host.data_root.with_suffix(".lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"{host.data_root} is in use by another multi-host test: wait for it to end") from None
    host.lock = handle


def wire(host: NamespaceHost, bridge: str, link: str) -> None:
    """A veth from the host's namespace to the bridge, MTU LINK_MTU, its address on SUBNET/24."""
    run("ip", "netns", "add", host.netns)
    run("ip", "link", "add", f"{link}a", "mtu", str(LINK_MTU), "type", "veth", "peer", "name", f"{link}b", "mtu", str(LINK_MTU))
    run("ip", "link", "set", f"{link}a", "netns", host.netns)
    run("ip", "link", "set", f"{link}b", "netns", bridge)
    run("ip", "-n", host.netns, "link", "set", f"{link}a", "name", "eth0")
    run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
    run("ip", "-n", host.netns, "link", "set", "eth0", "up")
    run("ip", "-n", host.netns, "link", "set", "lo", "up")
    run("ip", "-n", bridge, "link", "set", f"{link}b", "master", "br0", "up")


def start_dockerd(host: NamespaceHost) -> None:
    # an earlier run's swarm and networks would come back with it: only the image store is kept
    for state in ("swarm", "network", "containers"):
        shutil.rmtree(host.data_root / state, ignore_errors=True)
    config = host.data_root.with_suffix(".json")
    config.write_text("{}")  # not /etc/docker/daemon.json, which is the machine's daemon's
    host.log = host.data_root.with_suffix(".log")
    name = Path(host.exec_root).name
    command = [
        "nsenter", f"--net=/run/netns/{host.netns}", "--",
        "dockerd",
        "--config-file", str(config),
        "--data-root", str(host.data_root),
        "--exec-root", host.exec_root,
        "--pidfile", f"{host.exec_root}.pid",
        "-H", host.socket,
        "--containerd-namespace", name,
        "--containerd-plugins-namespace", f"{name}p",
        "--cgroup-parent", f"/{name}",
        "--mtu", str(LINK_MTU),
        "--network-control-plane-mtu", str(LINK_MTU),
    ]  # fmt: skip
    with open(host.log, "w") as log:
        host.process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)


def wait_for_dockerd(host: NamespaceHost) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert host.process is not None
        if host.process.poll() is not None:
            break
        with contextlib.suppress(Exception):
            host.client().ping()
            return
        time.sleep(0.5)  # between pings, within the bounded wait
    tail = host.log.read_text().splitlines()[-10:] if host.log else []
    raise RuntimeError(
        f"dockerd of {host.name} did not answer within {START_SECONDS}s; its last log lines:\n" + "\n".join(tail)
    )


def stop_dockerd(host: NamespaceHost) -> None:
    """Containers removed, the swarm left, dockerd stopped (SIGKILL after 30 s), its shims and mounts gone."""
    if host.process is not None and host.process.poll() is None:
        with contextlib.suppress(Exception):
            client = host.client()
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.swarm.leave(force=True)
        host.process.terminate()
        try:
            host.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            host.process.kill()
            host.process.wait(timeout=30)
    kill_by_pattern(host.exec_root)
    unmount_under(host.exec_root, str(host.data_root))
    shutil.rmtree(host.exec_root, ignore_errors=True)


def kill_by_pattern(exec_root: str) -> None:
    """Processes left by a daemon (containerd, shims, container init) whose command line names its exec root."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if exec_root.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(int(pid), signal.SIGKILL)


def unmount_under(*roots: str) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in reversed(mounts):
        if any(point == root or point.startswith(root.rstrip("/") + "/") for root in roots):
            run("umount", "-l", point, check=False)


def remove_leftovers() -> None:
    """What a crashed earlier run left (its daemons, mounts, namespaces): safe, as the locks are ours."""
    for exec_root in Path("/run").glob(f"{PREFIX}*"):
        if exec_root.is_dir():
            kill_by_pattern(str(exec_root))
            unmount_under(str(exec_root))
            shutil.rmtree(exec_root, ignore_errors=True)
    unmount_under(str(DATA_ROOT))
    for name in run("ip", "netns", "list").stdout.split():
        if name.startswith(PREFIX):
            run("ip", "netns", "del", name, check=False)
