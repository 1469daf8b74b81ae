"""Bounded waits on the services' health checks; a timeout names the service and shows its logs.

Readiness and status are the kit's own probes: it runs a service's check itself, now. Docker
runs the same check only every HEALTH_INTERVAL seconds, for `docker ps`: each run is a
`docker exec` of Python, about 130 ms of CPU, and during training every such burst stalls one
worker while the other waits for it at the all-reduce (1 slot loses nothing: the idle core
takes them). At 30 s the six checks were 26 of an idle cluster's 50 ms/s of CPU.
"""

from __future__ import annotations

import time
from typing import Any, Callable

POLL_SECONDS = 1.0
HEALTH_INTERVAL = 300


class ServiceNotReady(RuntimeError):
    """A service that did not become healthy in time, with its health output and last logs."""


def last_logs(container, lines: int = 25) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace").rstrip()
    except Exception as error:  # the container may be gone; the diagnosis must still come out
        return f"(logs unavailable: {error})"


def last_health_output(container) -> str:
    health = (container.attrs.get("State") or {}).get("Health") or {}
    log = health.get("Log") or []
    return log[-1]["Output"].strip() if log else "(no health check has run yet)"


def diagnosis(name: str, container, why: str, probed: str | None = None) -> str:
    return (
        f"{name} {why}.\n  last health check: {probed or last_health_output(container)}\n"
        f"  last log lines of {container.name}:\n" + "\n".join("    " + line for line in last_logs(container).splitlines())
    )


def wait_healthy(
    named_containers: list[tuple[str, Any]],
    timeout: float,
    say: Callable[[str], None] = print,
    clock=time.monotonic,
    sleep=time.sleep,
    probe: Callable[[str, object], tuple[bool, str]] | None = None,
    on_healthy: dict[str, Callable[[], None]] | None = None,
) -> float:
    """Wait until every container is healthy; fail fast when one exits. Returns seconds.

    probe(name, container) -> (ready, what it saw) runs the health check now; without it the
    wait reads Docker's health status, which may be HEALTH_INTERVAL old. on_healthy[name]()
    runs the moment that service is healthy, while the others are still awaited (what they
    wait for can be made then).
    """
    started = clock()
    pending = dict(named_containers)
    seen: dict[str, str] = {}
    while pending:
        for name, container in list(pending.items()):
            container.reload()
            state = container.attrs["State"]
            if state.get("Status") in ("exited", "dead"):
                raise ServiceNotReady(diagnosis(name, container, f"exited with code {state.get('ExitCode')}"))
            if probe is not None:
                ready, seen[name] = probe(name, container)
            else:
                ready = (state.get("Health") or {}).get("Status") == "healthy"
            if ready:
                say(f"{name}: healthy ({clock() - started:.0f}s)")
                del pending[name]
                (on_healthy or {}).get(name, lambda: None)()
        if not pending:
            break
        if clock() - started > timeout:
            name, container = next(iter(pending.items()))
            raise ServiceNotReady(diagnosis(name, container, f"was not healthy within {timeout:.0f}s", seen.get(name)))
        sleep(POLL_SECONDS)
    return clock() - started
