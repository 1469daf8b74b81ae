"""Docker hosts on one machine: a network namespace and a dockerd per host, on a bridge of their own.

Each host's link has MTU 1400 (a VPN or cloud LAN, below the 1500 the overlay assumes), and
all traffic stays in the namespaces made here. dockerd is started with `nsenter --net` (not
`ip netns exec`, whose private /sys hides the cgroup mounts: moby/moby#21090), with its own data
root, exec root, pid file, socket and containerd namespace. Data roots stay between runs under
DATA_ROOT (so images are copied once), guarded by a lock: one multi-host test at a time.
Teardown removes the containers, stops each daemon by pid, kills what is left in its cgroup
(containers, shims), unmounts what it left and removes the namespaces and cgroups, also when
the test fails; each step runs even when an earlier one failed.
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
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from cluster.topology import PROJECT_LABEL, SERVICE_LABEL

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

    @property
    def socket(self) -> str:
        return f"unix://{self.exec_root}.sock"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.socket, timeout=300)


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done


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
    with contextlib.ExitStack() as held:
        for host in hosts:  # before anything is touched: a run that holds them is left alone
            held.enter_context(lock(host))
        try:
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
            tear_down(hosts, bridge)


def tear_down(hosts: list[NamespaceHost], bridge: str) -> None:
    """Every step for every host, whatever failed before it; the first error is raised at the end."""
    errors: list[BaseException] = []
    steps = [(stop_dockerd, host) for host in hosts]
    steps += [(lambda name: run("ip", "netns", "del", name, check=False), name) for name in [h.netns for h in hosts] + [bridge]]
    for step, argument in steps:
        try:
            step(argument)
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]


@contextlib.contextmanager
def lock(host: NamespaceHost) -> Iterator[None]:
    host.data_root.mkdir(parents=True, exist_ok=True)
    with open(host.data_root.with_suffix(".lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{host.data_root} is in use by another multi-host test: wait for it to end") from None
        yield


def wire(host: NamespaceHost, bridge: str, link: str) -> None:
    """A veth from the host's namespace to the bridge, MTU LINK_MTU, its address on SUBNET/24.

    Made inside the two namespaces at once: no half-made link is ever left in the machine's own."""
    run("ip", "netns", "add", host.netns)
    mtu = str(LINK_MTU)
    run(
        "ip",
        "link",
        "add",
        "eth0",
        "mtu",
        mtu,
        "netns",
        host.netns,
        "type",
        "veth",
        "peer",
        "name",
        link,
        "mtu",
        mtu,
        "netns",
        bridge,
    )
    run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
    run("ip", "-n", host.netns, "link", "set", "eth0", "up")
    run("ip", "-n", host.netns, "link", "set", "lo", "up")
    run("ip", "-n", bridge, "link", "set", link, "master", "br0", "up")


def ip_counters(host: NamespaceHost) -> dict[str, int]:
    """The host namespace's IP counters (/proc/net/snmp), e.g. FragCreates: packets it had to fragment."""
    lines = [
        line.split() for line in run("nsenter", f"--net=/run/netns/{host.netns}", "cat", "/proc/net/snmp").stdout.splitlines()
    ]
    names, values = [line for line in lines if line[0] == "Ip:"][:2]
    return dict(zip(names[1:], map(int, values[1:])))


def keep_only_images(host: NamespaceHost, image_ids: set[str]) -> None:
    """Images of earlier builds removed from the host's kept store: each rebuild would add a copy."""
    client = host.client()
    for image in client.images.list(all=True):
        if image.id not in image_ids:
            with contextlib.suppress(docker.errors.APIError):  # a parent layer of a kept one: goes with it later
                client.images.remove(image.id, force=True)


def start_dockerd(host: NamespaceHost, fresh: bool = True) -> None:
    """fresh: an earlier run's swarm, networks and volumes removed (only the image store is kept);
    else the daemon comes back with its state, as after a crash."""
    for state in ("swarm", "network", "containers", "volumes") if fresh else ():
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
        "--containerd-namespace", f"dlkit-nshost-{host.name}",  # stable: the data root is kept
        "--containerd-plugins-namespace", f"dlkit-nshost-{host.name}-plugins",
        "--cgroup-parent", f"/{name}",
        "--exec-opt", "native.cgroupdriver=cgroupfs",  # systemd's driver wants a .slice parent
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
    """Containers removed, the swarm left, dockerd stopped (SIGKILL after 30 s), its cgroup emptied, its mounts gone."""
    if host.process is not None and host.process.poll() is None:
        with contextlib.suppress(Exception):  # a daemon that no longer answers is killed below
            client = host.client()
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.swarm.leave(force=True)
        host.process.terminate()
        try:
            host.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            host.process.kill()
    clear_runtime(host)


def reboot(host: NamespaceHost) -> float:
    """The host goes down hard and comes back: its dockerd and every process under it killed, its /run
    state gone, its disk (the data root: swarm state, volumes, images) kept; dockerd started again.
    Returns the seconds until the new dockerd answered."""
    assert host.process is not None
    host.process.kill()
    host.process.wait(timeout=30)
    clear_runtime(host)
    started = time.monotonic()
    start_dockerd(host, fresh=False)
    wait_for_dockerd(host)
    return time.monotonic() - started


def clear_runtime(host: NamespaceHost) -> None:
    """What a daemon leaves outside its data root: processes, cgroups, mounts, its exec root, socket and pid file."""
    kill_by_exec_root(host.exec_root)
    empty_cgroups(Path(host.exec_root).name)
    unmount_under(host.exec_root, str(host.data_root))
    shutil.rmtree(host.exec_root, ignore_errors=True)
    for leftover in (f"{host.exec_root}.sock", f"{host.exec_root}.pid"):
        Path(leftover).unlink(missing_ok=True)


def kill_by_exec_root(exec_root: str) -> None:
    """The daemon and its containerd and shims: their command lines name its exec root."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if exec_root.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(int(pid), signal.SIGKILL)


def empty_cgroups(name: str, seconds: float = 10) -> None:
    """Kill every process under the cgroup `name` (the containers: their command lines name no
    daemon) in each hierarchy, then remove its folders, deepest first, within seconds."""
    folders = sorted(
        (path for root in Path("/sys/fs/cgroup").glob(f"*/{name}") for path in [root, *root.rglob("*")] if path.is_dir()),
        key=lambda path: len(path.parts),
        reverse=True,
    )
    deadline = time.monotonic() + seconds
    for folder in folders:
        while folder.exists():
            with contextlib.suppress(OSError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                folder.rmdir()
            if folder.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cgroup {folder} still has processes after {seconds:.0f}s")
                time.sleep(0.2)  # the killed processes take a moment to leave it


def unmount_under(*roots: str) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in reversed(mounts):
        if any(point == root or point.startswith(root.rstrip("/") + "/") for root in roots):
            run("umount", "-l", point, check=False)


def remove_leftovers() -> None:
    """What a crashed earlier run left (daemons, containers, mounts, cgroups, namespaces): safe, as the locks are ours."""
    for exec_root in Path("/run").glob(f"{PREFIX}*"):
        if exec_root.is_dir():
            kill_by_exec_root(str(exec_root))
            unmount_under(str(exec_root))
            shutil.rmtree(exec_root, ignore_errors=True)
        else:  # a socket or pid file
            exec_root.unlink(missing_ok=True)
    for name in {path.name for path in Path("/sys/fs/cgroup").glob(f"*/{PREFIX}*")}:
        empty_cgroups(name)
    unmount_under(str(DATA_ROOT))
    for name in run("ip", "netns", "list").stdout.split():
        if name.startswith(PREFIX):
            run("ip", "netns", "del", name, check=False)


def hosts_config(hosts: list[NamespaceHost], roles: dict[str, tuple[str, ...]], cluster: dict) -> dict:
    """invoke.yaml's cluster section for these hosts (h1 the manager): what a user's hosts file holds."""
    entries = [
        {
            "name": h.name,
            "endpoint": h.socket,
            "address": h.address,
            "manager": h.name == "h1",
            "mtu": LINK_MTU,
            "runs": list(roles[h.name]),
        }
        for h in hosts
    ]
    return {"cluster": {**cluster, "hosts": entries}}


def give_workers_their_cpus(hosts: list[NamespaceHost], project: str) -> dict[str, str]:
    """Namespace hosts share one machine's CPUs: each host's worker gets CPU k of its own (h1: 0, h2: 1...),
    as a real host's worker has its machine's, so slot 0 of every host does not pin to the same CPU."""
    cpus = os.cpu_count() or 1
    given = {}
    for index, host in enumerate(hosts):
        for container in host.client().containers.list(filters={"label": f"{PROJECT_LABEL}={project}"}):
            if container.labels.get(SERVICE_LABEL, "").startswith("spark-worker"):
                container.update(cpuset_cpus=str(index % cpus))
                given[container.labels[SERVICE_LABEL]] = str(index % cpus)
    return given


def main(argv: list[str]) -> int:
    """python -m tests.integration.nshosts PROJECT ROLES_JSON CLUSTER_JSON -- COMMAND...

    Two (or more) namespace hosts, the kit's `up` on them with a hosts file ($NSHOSTS_CONFIG),
    each worker given a CPU of its own, COMMAND run in a shell (e.g. `invoke -f $NSHOSTS_CONFIG
    bench --project $NSHOSTS_PROJECT ...`), then `down --volumes` and the hosts removed. For
    figures by hand, such as a bench across hosts; the tests use namespace_hosts directly."""
    import json
    import sys

    project, roles, cluster = argv[0], json.loads(argv[1]), json.loads(argv[2])
    command = argv[argv.index("--") + 1 :]
    with namespace_hosts(len(roles)) as hosts:
        config = DATA_ROOT / "hosts.yaml"
        config.write_text(json.dumps(hosts_config(hosts, roles, cluster)))
        kit = [sys.executable, "-m", "invoke", "-f", str(config)]
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"  # the kit's python first, as ./kit does
        env = {**os.environ, "PATH": path, "NSHOSTS_CONFIG": str(config), "NSHOSTS_PROJECT": project}
        try:
            subprocess.run([*kit, "up", "--project", project], check=True)
            print(f"nshosts: workers' CPUs {give_workers_their_cpus(hosts, project)}", flush=True)
            return subprocess.run(["bash", "-c", " ".join(command)], env=env).returncode
        finally:
            subprocess.run([*kit, "down", "--volumes", "--project", project])


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
