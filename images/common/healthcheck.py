"""Readiness checks run by Docker's HEALTHCHECK inside the kit's containers.

Each check prints one line saying what it saw (Docker keeps it in the health log, and the
kit shows it when a wait times out) and exits 0 only when the service is ready for work,
not merely listening: the namenode out of safe mode with its datanodes live, a worker
registered with the master with all its cores.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
import urllib.request


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=3) as response:
        return json.load(response)


def jmx_bean(port: int, query: str) -> dict:
    beans = fetch_json(f"http://localhost:{port}/jmx?qry={query}").get("beans", [])
    if not beans:
        raise LookupError(f"no JMX bean {query}")
    return beans[0]


def check_namenode(port: str, min_datanodes: str) -> tuple[bool, str]:
    info = jmx_bean(int(port), "Hadoop:service=NameNode,name=NameNodeInfo")
    state = jmx_bean(int(port), "Hadoop:service=NameNode,name=FSNamesystemState")
    live = int(state.get("NumLiveDataNodes", 0))
    safemode = info.get("Safemode", "")
    if safemode:
        return False, f"namenode in safe mode: {safemode.strip()}"
    if live < int(min_datanodes):
        return False, f"{live} of {min_datanodes} datanodes live"
    return True, f"out of safe mode, {live} datanodes live"


def check_datanode(port: str) -> tuple[bool, str]:
    info = jmx_bean(int(port), "Hadoop:service=DataNode,name=DataNodeInfo")
    actors = json.loads(info.get("BPServiceActorInfo", "[]") or "[]")
    running = [a for a in actors if a.get("ActorState") == "RUNNING"]
    if not running:
        return False, "not yet registered with the namenode"
    return True, f"registered with {running[0].get('NamenodeAddress', 'the namenode')}"


def check_spark_master(port: str) -> tuple[bool, str]:
    status = fetch_json(f"http://localhost:{port}/json/").get("status")
    return status == "ALIVE", f"master status {status}"


def check_spark_worker(master_ui: str, host: str, cores: str) -> tuple[bool, str]:
    workers = fetch_json(f"{master_ui}/json/").get("workers", [])
    mine = [w for w in workers if w.get("host") == host and w.get("state") == "ALIVE"]
    if not mine:
        return False, f"no ALIVE worker {host} registered at the master"
    if mine[0].get("cores") != int(cores):
        return False, f"registered with {mine[0].get('cores')} cores, expected {cores}"
    return True, f"registered, {cores} cores"


def check_http(url: str) -> tuple[bool, str]:
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.status == 200, f"HTTP {response.status}"


def check_port(address: str) -> tuple[bool, str]:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=2):
        return True, f"{address} accepts connections"


def run_check(argv: list[str]) -> tuple[bool, str]:
    try:
        return CHECKS[argv[0]](*argv[1:])
    except Exception as error:  # any failure to look is "not ready", with the reason shown
        return False, f"{type(error).__name__}: {error}"


def wait_for(environ=os.environ, clock=time.monotonic, sleep=time.sleep) -> int:
    """At a container's start: wait (bounded) until what the service needs answers, so it starts as
    soon as it can rather than at the kit's next stage. KIT_WAIT_FOR is a check and its arguments,
    e.g. "port spark-master:7077"; KIT_WAIT_SECONDS bounds the wait. Exits 1 when time runs out."""
    argv = shlex.split(environ.get("KIT_WAIT_FOR", ""))
    if not argv:
        return 0
    deadline = clock() + float(environ.get("KIT_WAIT_SECONDS", "120"))
    while True:
        ready, detail = run_check(argv)
        if ready or clock() > deadline:
            print(f"waited for {' '.join(argv)}: " + ("ready: " if ready else "gave up: ") + detail, file=sys.stderr)
            return 0 if ready else 1
        sleep(0.25)


CHECKS = {
    "namenode": check_namenode,
    "datanode": check_datanode,
    "spark-master": check_spark_master,
    "spark-worker": check_spark_worker,
    "http": check_http,
    "port": check_port,
}


def main(argv: list[str]) -> int:
    if argv == ["wait"]:
        return wait_for()
    if not argv or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {{{'|'.join(CHECKS)}}} ARGS... | healthcheck.py wait", file=sys.stderr)
        return 2
    ready, detail = run_check(argv)
    print(("ready: " if ready else "not ready: ") + detail)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
