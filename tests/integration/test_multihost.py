"""Several Docker hosts, made as network namespaces on this machine, joined in one swarm: the
substrate the multi-host cluster stands on, proven with the kit's own image and swarm code."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import json
import re
import subprocess
import sys
import time

import pytest

from cli.settings import cluster_shape
from cluster import swarm
from cluster.hosts import HostSpec
from cluster.lifecycle import exec_bounded
from cluster.multihost import MultiHostCluster
from cluster.topology import SERVICE_LABEL
from tests.integration import nshosts
from tests.integration.support import (
    JOB_TIMEOUT,
    ROOT,
    SHARDS,
    SOURCE,
    kit_context,
    namesystem_state,
    result_of,
    run_job,
    shape_for_tests,
    train,
    wait_for_epoch,
)

pytestmark = pytest.mark.multihost

BLOB_MB = 64
POOL = "10.231.0.0/16"  # the swarm's overlay addresses
SERVE = (  # on host 1: a file of random bytes over HTTP, on the overlay only (nothing published)
    "import http.server, os\n"
    "os.chdir('/tmp')\n"
    f"open('/tmp/blob', 'wb').write(os.urandom({BLOB_MB} << 20))\n"
    "http.server.ThreadingHTTPServer(('', 8000), http.server.SimpleHTTPRequestHandler).serve_forever()\n"
)
FETCH = (  # on host 2: the overlay's MTU, the TCP segment size toward host 1, and the file's bytes
    "import fcntl, json, socket, struct, time, urllib.request\n"
    "deadline = time.monotonic() + 90\n"
    "while True:\n"
    "    try:\n"
    "        probe = socket.create_connection(('served', 8000), timeout=10)\n"
    "        break\n"
    "    except OSError:\n"
    "        if time.monotonic() > deadline:\n"
    "            raise\n"
    "        time.sleep(0.5)\n"
    "mss = probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)\n"
    "local = probe.getsockname()[0]\n"
    "probe.close()\n"
    "def address(name):  # SIOCGIFADDR: the interface's IPv4 address (the image has no `ip`)\n"
    "    with socket.socket() as s:\n"
    "        return socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', name.encode()[:15]))[20:24])\n"
    "def mtu(name):\n"
    "    return int(open(f'/sys/class/net/{name}/mtu').read())\n"
    "overlay = next(n for _, n in socket.if_nameindex() if n != 'lo' and address(n) == local)\n"
    "started, received = time.monotonic(), 0\n"
    "with urllib.request.urlopen('http://served:8000/blob', timeout=60) as response:\n"
    "    while chunk := response.read(1 << 20):\n"
    "        received += len(chunk)\n"
    "seconds = time.monotonic() - started\n"
    "print(json.dumps({'mss': mss, 'local': local, 'served': socket.gethostbyname('served'),\n"
    "                  'bytes': received, 'seconds': seconds, 'overlay_mtu': mtu(overlay)}))\n"
)


def test_two_namespace_hosts_form_a_swarm_whose_overlay_carries_full_size_packets_across_them(docker_client):
    why_not = nshosts.usable()
    assert why_not is None, why_not  # CI runs as root with nsenter: never skipped there
    image = cluster_shape(kit_context()).hadoop_image
    with nshosts.namespace_hosts(2) as made:
        hosts = {h.name: swarm.SwarmHost(h.name, h.client(), h.address, nshosts.LINK_MTU) for h in made}
        manager, worker = hosts["h1"], hosts["h2"]
        nodes = swarm.form(manager, [worker], POOL)
        image_id = {name: swarm.copy_image(docker_client, image, host) for name, host in hosts.items()}["h2"]
        network = swarm.overlay(manager, "dlkit-multihost-test", list(hosts.values()), labels={"dlkit.test": "multihost"})
        common = {"image_id": image_id, "network": network.name}
        served = swarm.place(manager, name="served", host="h1", command=["python3", "-c", SERVE], **common)
        fetcher = swarm.place(manager, name="fetcher", host="h2", command=["sleep", "3600"], **common)
        placed = {
            service.name: swarm.task_container(hosts, nodes, swarm.running_task(service, 120)) for service in (served, fetcher)
        }
        listed = manager.client.nodes.list()
        fragmented_before = {h.name: nshosts.ip_counters(h)["FragCreates"] for h in made}
        code, output = exec_bounded(placed["fetcher"][1], ["python3", "-c", FETCH], 150, "the cross-host fetch")
        fragmented = {h.name: nshosts.ip_counters(h)["FragCreates"] - fragmented_before[h.name] for h in made}
        assert code == 0, output.decode(errors="replace")[-3000:]
        fetched = json.loads(output.decode().splitlines()[-1])

    assert {name: host for name, (host, _) in placed.items()} == {"served": "h1", "fetcher": "h2"}
    # the copied image, by ID, on both hosts: no registry was asked (none answers here)
    assert {container.attrs["Image"] for _, container in placed.values()} == {image_id}
    assert sorted(n.attrs["Spec"]["Labels"][swarm.HOST_LABEL] for n in listed) == ["h1", "h2"]
    assert all(n.attrs["Status"]["State"] == "ready" for n in listed), [n.attrs["Status"] for n in listed]
    overlay_mtu = swarm.container_mtu(list(hosts.values()))
    assert fetched["overlay_mtu"] == overlay_mtu == 1350, fetched  # the fetcher's interface toward `served`
    assert ipaddress.ip_address(fetched["served"]) in ipaddress.ip_network(POOL), fetched  # over the overlay
    # segments as large as the overlay allows (its MTU less IP and TCP headers, TCP timestamps),
    # and not one packet fragmented on either host's 1400 link by the VXLAN header
    assert overlay_mtu - 60 <= fetched["mss"] <= overlay_mtu - 40, fetched
    assert fragmented == {"h1": 0, "h2": 0}, fragmented
    assert fetched["bytes"] == BLOB_MB << 20, fetched
    print(
        f"multihost: 2 swarm nodes on namespace hosts (link MTU {nshosts.LINK_MTU}, overlay {overlay_mtu}); "
        f"{BLOB_MB} MB from h1 to h2 over the overlay in {fetched['seconds']:.2f}s "
        f"({BLOB_MB / fetched['seconds']:.0f} MB/s, MSS {fetched['mss']})"
    )


# h1 is the manager and runs what exists once; each host runs a datanode and a worker
ROLES = {"h1": ("namenode", "spark-master", "spark-history", "datanode", "spark-worker"), "h2": ("datanode", "spark-worker")}
BLOCK_BYTES = 16 << 20  # the 64 MB file in 4 blocks: each placed on its own
# small enough for two hosts on one 2-core machine: a worker of one 1-core executor per host
SMALL = {
    "datanodes": 2,
    "replication": 2,
    "worker_cores": 1,
    "executor_cores": 1,
    "worker_memory_gb": 2,
    "executor_memory_gb": 2,
    "worker_container_memory_gb": 3,
}
UI_PAGES = {"namenode": "/dfshealth.html"}
RUN_EPOCHS, RUN_STEPS = 4, 40  # about 8 s an epoch: h2 goes down with most of the run to come
RUN_FILES = {"settings.json", "attempts.json", "progress.jsonl", "final_model.keras", "metrics.json", "sharding.json"}
MD5 = re.compile(r"\b[0-9a-f]{32}\b")
REPLICA = re.compile(r"DatanodeInfoWithStorage\[([0-9.]+):")


def blob_script(size_mb: int) -> str:
    """In the namenode container: a file of random bytes written to HDFS with replication 2; its md5."""
    return (
        f"set -e; head -c {size_mb << 20} /dev/urandom > /tmp/blob; "
        f"hdfs dfs -D dfs.replication=2 -D dfs.blocksize={BLOCK_BYTES} -put -f /tmp/blob /blob; "
        "md5sum < /tmp/blob | cut -d' ' -f1; rm /tmp/blob"
    )


def stale_datanodes(cluster) -> int:
    return namesystem_state(cluster)["NumStaleDataNodes"]


def overlay_address(container, network: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def ended(running: concurrent.futures.Future):
    """wait_for_epoch's view of the training thread: None while it runs, else how it ended."""
    if not running.done():
        return None
    return repr(running.exception()) if running.exception() else running.result()[1][-3000:]


def stop_training(training: concurrent.futures.ThreadPoolExecutor, running) -> None:
    """After a failure the run's driver went with the cluster: its thread ends, its output shown."""
    if running is not None and not running.done():
        with contextlib.suppress(Exception):
            code, output = running.result(timeout=120)
            print(f"[multihost] the run's driver ended with {code}: {output[-2000:]}")
    training.shutdown(wait=False)


def test_kit_up_places_the_cluster_over_two_hosts_with_a_replica_of_every_block_on_each(docker_client, source, tmp_path):
    why_not = nshosts.usable()
    assert why_not is None, why_not  # CI runs as root with nsenter: never skipped there
    base = shape_for_tests()
    keep = {docker_client.images.get(image).id for image in (base.hadoop_image, base.spark_image)}
    with nshosts.namespace_hosts(2) as made:
        for host in made:
            nshosts.keep_only_images(host, keep)
        specs = tuple(
            HostSpec(h.name, h.socket, h.address, ROLES[h.name], manager=h.name == "h1", mtu=nshosts.LINK_MTU) for h in made
        )
        shape = dataclasses.replace(base, hosts=specs, **SMALL)
        config = tmp_path / "hosts.yaml"  # the user's way: invoke.yaml's cluster section, overridden
        config.write_text(json.dumps(nshosts.hosts_config(made, ROLES, SMALL)))

        def kit(*args: str) -> str:
            command = [sys.executable, "-m", "invoke", "-f", str(config), *args, "--project", shape.project]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{args}: {(done.stdout + done.stderr)[-4000:]}"
            return done.stdout

        cluster = MultiHostCluster(shape, docker_client)
        training, running = concurrent.futures.ThreadPoolExecutor(1), None
        say = lambda line: print(f"[multihost] {line}")  # noqa: E731
        try:
            started = time.monotonic()
            say(kit("up"))
            report = json.loads(kit("status", "--json"))
            nshosts.give_workers_their_cpus(made, shape.project)  # the 2-slot run's workers on different CPUs
            up_seconds = time.monotonic() - started
            placed = {  # found on each engine by label, not through the cluster's own lookup
                c.labels[SERVICE_LABEL]: h.name for h in made for c in h.client().containers.list(filters=shape.selector)
            }
            namenode = cluster.container("namenode")
            code, output = exec_bounded(namenode, ["sh", "-c", blob_script(BLOB_MB)], 240, "writing the 64 MB file")
            assert code == 0, output.decode(errors="replace")[-2000:]
            written_md5 = MD5.findall(output.decode())[-1]  # after the hdfs client's log lines
            fsck = cluster.hdfs(["fsck", "/blob", "-files", "-blocks", "-locations"])
            datanodes = [s for s in cluster.services if s.role == "datanode"]
            datanode_host = {overlay_address(cluster.container(s.name), shape.network): s.host for s in datanodes}
            replicas = [
                sorted(datanode_host.get(address, address) for address in REPLICA.findall(line))
                for line in fsck.splitlines()
                if "blk_" in line and "DatanodeInfoWithStorage" in line
            ]
            # datanode-1 (beside the namenode, on h1) gone: every block must come from h2
            [datanode_1] = [s for s in cluster.swarm_services() if s.name == shape.container_name("datanode-1")]
            datanode_1.scale(0)
            deadline = time.monotonic() + 60
            while cluster.container("datanode-1") is not None and cluster.container("datanode-1").status == "running":
                assert time.monotonic() < deadline, "datanode-1's task still runs 60 s after its service was scaled to 0"
                time.sleep(0.5)  # the engine stops the task within its grace period
            # until the namenode calls it stale (4 s of silence), a read may try it first and wait out a
            # 60 s connect timeout: no host answers for an address that is gone
            deadline = time.monotonic() + 60
            while stale_datanodes(cluster) < 1:
                assert time.monotonic() < deadline, "the namenode did not call datanode-1 stale within 60 s"
                time.sleep(0.5)  # the namenode's heartbeat check runs every few seconds
            fragmented_before = {h.name: nshosts.ip_counters(h)["FragCreates"] for h in made}
            reading = time.monotonic()
            read_back = ["bash", "-o", "pipefail", "-c", "hdfs dfs -cat /blob | md5sum"]  # a failed read fails
            code, output = exec_bounded(namenode, read_back, 240, "reading the file back")
            read_seconds = time.monotonic() - reading
            fragmented = {h.name: nshosts.ip_counters(h)["FragCreates"] - fragmented_before[h.name] for h in made}
            assert code == 0, output.decode(errors="replace")[-2000:]
            read_md5 = MD5.findall(output.decode())[-1]
            healed = cluster.up(say=say)  # the scaled-down datanode back
            pages = {  # from inside h1, whose loopback the UIs are published on
                entry["name"]: nshosts.run(
                    "nsenter", f"--net=/run/netns/{made[0].netns}", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                    "--max-time", "20", entry["ui"] + UI_PAGES.get(entry["name"], "/"),
                ).stdout
                for entry in healed["services"]
                if entry["ui"]
            }  # fmt: skip
            target = shape.default_fs + "/data/cifar10-multihost"
            stage_args = ["--source", SOURCE, "--target", target, "--shards", str(SHARDS)]
            code, output = run_job(cluster, "/opt/dlkit/jobs/stage_cifar.py", stage_args, source)
            assert code == 0, output[-4000:]
            # a 2-slot run, one worker per host; h2 goes down hard once the first epoch is checkpointed, and
            # comes back (a reboot: its processes and /run gone, its disk kept). The kit's up heals it, and
            # the run, waiting for its slots, resumes from that checkpoint on both hosts again.
            running = training.submit(
                train, cluster, target, source, run_id="it-multihost", slots=2, cores_per_slot=1, epochs=RUN_EPOCHS,
                steps_per_epoch=RUN_STEPS, attempts=3, recovery_wait=240.0,
            )  # fmt: skip
            wait_for_epoch(cluster, "it-multihost", 1, lambda: ended(running))
            rebooted_at = time.time()
            dockerd_back = nshosts.reboot(made[1])
            healing = time.monotonic()
            kit("up")
            heal_seconds = time.monotonic() - healing
            nshosts.give_workers_their_cpus(made, shape.project)  # h2's worker is a new container
            code, output = running.result(timeout=JOB_TIMEOUT)
            assert code == 0, output[-4000:]
            trained = result_of(output)
            sharding, metrics = (
                json.loads(cluster.webhdfs_read(f"/runs/it-multihost/{name}") or "null")
                for name in ("sharding.json", "metrics.json")
            )
            assert sharding is not None and metrics is not None, "the run's sharding.json or metrics.json is not in HDFS"
            run_folder = {entry["pathSuffix"] for entry in cluster.webhdfs_list("/runs/it-multihost")}
            after_reboot = json.loads(kit("status", "--json"))
            say(kit("down", "--volumes"))  # it fails when anything is left on any engine
            left = cluster.leftovers()
        finally:
            try:
                cluster.down(volumes=True, say=say)  # after a failure: nothing left on the daemons' data roots
            finally:
                stop_training(training, running)

    assert placed == {**{s.name: s.host for s in cluster.services}, "ui": "h1"}, placed  # the UI forwarder on the manager
    assert {s["name"]: (s["state"], s["health"]) for s in report["services"]} == {
        s.name: ("running", "healthy") for s in cluster.services
    }, report["services"]
    assert report["hdfs"]["live_datanodes"] == 2, report["hdfs"]
    workers = {w["host"]: (w["state"], w["cores"]) for w in report["spark"]["workers"]}
    assert workers == {"spark-worker-1": ("ALIVE", 1), "spark-worker-2": ("ALIVE", 1)}, report["spark"]
    assert len(replicas) == 4 and all(hosts == ["h1", "h2"] for hosts in replicas), fsck
    assert read_md5 == written_md5
    assert fragmented == {"h1": 0, "h2": 0}, fragmented
    assert healed["hdfs"]["live_datanodes"] == 2 and all(s["health"] == "healthy" for s in healed["services"]), healed
    assert pages == {
        "namenode": "200",
        "spark-master": "200",
        "spark-worker-1": "200",
        "spark-worker-2": "200",
        "spark-history": "200",
    }
    worker_host = {s.name: s.host for s in cluster.services if s.role == "spark-worker"}
    assert {worker_host[e["host"]] for e in sharding} == {"h1", "h2"}, sharding  # one slot on each host
    first, second = (set(e["train_files"]) for e in sharding)
    assert first and second and not first & second and len(first | second) == SHARDS, sharding
    assert RUN_FILES <= run_folder
    assert trained["slots"] == 2 and trained["epochs_run"] == RUN_EPOCHS, trained
    # resumed after the reboot from a checkpoint, never from scratch; every epoch in the history once
    assert metrics["restarts"] >= 1 and all(1 <= epoch < RUN_EPOCHS for epoch in metrics["resumed_from_epochs"]), metrics
    assert [row["epoch"] for row in metrics["history"]] == list(range(1, RUN_EPOCHS + 1)), metrics
    resumed_at = min(a["started_at"] for a in metrics["attempts"][1:])
    assert {s["name"]: (s["host"], s["state"], s["health"]) for s in after_reboot["services"]} == {
        s.name: (s.host, "running", "healthy") for s in cluster.services
    }, after_reboot["services"]
    assert after_reboot["hdfs"]["live_datanodes"] == 2 and after_reboot["spark"]["alive_workers"] == 2, after_reboot
    assert left == {"services": [], "networks": [], "containers": [], "volumes": []}, left
    print(
        f"multihost: kit up over 2 namespace hosts in {up_seconds:.0f}s; 4 blocks with a replica on each host, read back "
        f"in {read_seconds:.1f}s with datanode-1 gone; "
        f"2 slots on 2 hosts: {trained.get('steady_images_per_second')} images/s; h2 rebooted: its dockerd back in "
        f"{dockerd_back:.1f}s, healed by up in {heal_seconds:.0f}s; the run resumed from epoch(s) "
        f"{metrics['resumed_from_epochs']} {resumed_at - rebooted_at:.0f}s after the reboot"
    )
