"""Several Docker hosts, made as network namespaces on this machine, joined in one swarm: the
substrate the multi-host cluster stands on, proven with the kit's own image and swarm code."""

from __future__ import annotations

import ipaddress
import json

import pytest

from cli.settings import cluster_shape
from cluster import swarm
from cluster.lifecycle import exec_bounded
from tests.integration import nshosts
from tests.integration.support import kit_context

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
