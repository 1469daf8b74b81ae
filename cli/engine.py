"""Make sure a Docker engine answers, bringing Debian's docker.io up when the kit may."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import docker
import docker.errors
from invoke import Exit

DOCKERD_LOG = "/var/log/dlkit-dockerd.log"
POLL_SECONDS = 0.5  # between pings while dockerd starts, within the bounded wait


def ping() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except (docker.errors.DockerException, OSError):
        return None


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None and os.path.exists("/etc/debian_version")


def ensure_engine(wait_seconds: float = 60.0) -> docker.DockerClient:
    """A client whose engine answers; starts (and if need be installs) dockerd as root on Debian."""
    client = ping()
    if client:
        return client
    if os.environ.get("DOCKER_HOST"):
        raise Exit(
            f"No Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}: "
            "start it, or unset DOCKER_HOST to use the local engine."
        )
    if not can_install():
        raise Exit(
            "No Docker engine answers. Start Docker (e.g. 'sudo systemctl start docker'), "
            "make sure your user may use it (the 'docker' group), then run the task again."
        )
    if not shutil.which("dockerd"):
        print("kit: no Docker engine here: installing Debian's docker.io (as root)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # iproute2: `ip`, which the multi-host test needs to make its namespace hosts
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "docker.io", "iproute2"]):
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise Exit(
                    f"'{' '.join(command)}' failed, so no Docker engine could be installed:\n"
                    f"{result.stderr[-2000:]}\nInstall Docker yourself, then run the task again."
                )
    print(f"kit: starting dockerd in the background (log: {DOCKERD_LOG})", file=sys.stderr)
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        client = ping()
        if client:
            return client
        time.sleep(POLL_SECONDS)
    tail = _tail(DOCKERD_LOG)
    raise Exit(
        f"dockerd did not answer within {wait_seconds:.0f}s. Its last log lines:\n{tail}\n"
        "Fix what they say (often: another dockerd, or no overlay/iptables support), then retry."
    )


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no log)"
