import itertools

import pytest

from cluster.readiness import ServiceNotReady, wait_healthy
from images.common import healthcheck


class FakeContainer:
    """Just enough of docker's Container for the wait: scripted health states and logs."""

    def __init__(self, name, states, logs=b"line 1\nlast line\n"):
        self.name = name
        self._states = iter(states)
        self._logs = logs
        self.attrs = {}

    def reload(self):
        status, health, output = next(self._states)
        self.attrs = {
            "State": {
                "Status": status,
                "ExitCode": 1 if status == "exited" else 0,
                "Health": {"Status": health, "Log": [{"Output": output}]},
            }
        }

    def logs(self, tail):
        return self._logs


def fake_clock():
    ticks = itertools.count()
    return lambda: float(next(ticks))


def test_waits_until_every_container_is_healthy():
    slow = FakeContainer("x-a", [("running", "starting", "not ready: safe mode")] * 3 + [("running", "healthy", "ready")])
    fast = FakeContainer("x-b", [("running", "healthy", "ready")])
    said = []
    wait_healthy([("a", slow), ("b", fast)], timeout=60, say=said.append, clock=fake_clock(), sleep=lambda s: None)
    assert [s.split(":")[0] for s in said] == ["b", "a"]


def test_timeout_names_the_service_with_its_health_output_and_last_logs():
    stuck = FakeContainer("x-namenode", itertools.repeat(("running", "unhealthy", "not ready: 1 of 2 datanodes live")))
    with pytest.raises(ServiceNotReady) as raised:
        wait_healthy([("namenode", stuck)], timeout=5, say=lambda s: None, clock=fake_clock(), sleep=lambda s: None)
    message = str(raised.value)
    assert "namenode was not healthy within 5s" in message
    assert "1 of 2 datanodes live" in message and "last line" in message


def test_an_exited_container_fails_at_once():
    dead = FakeContainer("x-datanode-1", [("exited", "unhealthy", "")], logs=b"java.net.BindException\n")
    with pytest.raises(ServiceNotReady, match="(?s)exited with code 1.*BindException"):
        wait_healthy([("datanode-1", dead)], timeout=600, say=lambda s: None, clock=fake_clock(), sleep=lambda s: None)


@pytest.mark.parametrize(
    "safemode, live, ready, detail",
    [
        ("Safe mode is ON. The reported blocks 0 needs additional 3 blocks", 2, False, "safe mode"),
        ("", 1, False, "1 of 2 datanodes live"),
        ("", 2, True, "2 datanodes live"),
    ],
)
def test_namenode_is_ready_only_out_of_safe_mode_with_all_datanodes(monkeypatch, safemode, live, ready, detail):
    beans = {"NameNodeInfo": {"Safemode": safemode}, "FSNamesystemState": {"NumLiveDataNodes": live}}
    monkeypatch.setattr(healthcheck, "jmx_bean", lambda port, query: beans[query.rsplit("=", 1)[1]])
    assert healthcheck.check_namenode("9870", "2")[0] is ready
    assert detail in healthcheck.check_namenode("9870", "2")[1]


def test_worker_is_ready_only_when_registered_with_all_its_cores(monkeypatch):
    master = {"workers": [{"host": "spark-worker", "state": "ALIVE", "cores": 2}]}
    monkeypatch.setattr(healthcheck, "fetch_json", lambda url: master)
    assert healthcheck.check_spark_worker("http://m:8080", "spark-worker", "4") == (
        False,
        "registered with 2 cores, expected 4",
    )
    master["workers"][0]["cores"] = 4
    assert healthcheck.check_spark_worker("http://m:8080", "spark-worker", "4")[0] is True


def test_a_probe_sees_readiness_before_dockers_next_scheduled_check():
    starting = FakeContainer("x-nn", [("running", "starting", "")] * 10)
    answers = iter([(False, "namenode in safe mode"), (True, "out of safe mode, 2 datanodes live")])
    said = []
    wait_healthy(
        [("namenode", starting)],
        timeout=60,
        say=said.append,
        clock=fake_clock(),
        sleep=lambda s: None,
        probe=lambda name, container: next(answers),
    )
    assert said and said[0].startswith("namenode: healthy")


# Docker's own state, starting or healthy, never outranks the probe: Docker checks every few
# minutes, and its "healthy" may predate a datanode's loss
@pytest.mark.parametrize("docker_says", ["starting", "healthy"])
def test_a_probe_timeout_shows_what_the_probe_last_saw(docker_says):
    stuck = FakeContainer("x-nn", [("running", docker_says, "")] * 20)
    with pytest.raises(ServiceNotReady, match="last health check: 1 of 2 datanodes live"):
        wait_healthy(
            [("namenode", stuck)],
            timeout=5,
            say=lambda s: None,
            clock=fake_clock(),
            sleep=lambda s: None,
            probe=lambda name, container: (False, "1 of 2 datanodes live"),
        )


def test_what_waits_for_a_service_is_made_the_moment_it_is_healthy_not_after_the_others():
    namenode = FakeContainer("x-nn", [("running", "healthy", "ready")] * 5)
    history = FakeContainer(
        "x-h", [("running", "starting", "waiting for /spark-events")] * 2 + [("running", "healthy", "ready")]
    )
    events = []
    wait_healthy(
        [("namenode", namenode), ("spark-history", history)],
        timeout=60,
        say=events.append,
        clock=fake_clock(),
        sleep=lambda s: None,
        on_healthy={"namenode": lambda: events.append("folders made")},
    )
    assert [e.split(" (")[0] for e in events] == ["namenode: healthy", "folders made", "spark-history: healthy"]


def test_an_entrypoint_waits_for_what_its_service_needs_within_a_bound(capsys):
    ticks = itertools.count()
    answers = iter([(False, "refused"), (False, "refused"), (True, "accepts connections")])
    healthcheck.CHECKS["fake"] = lambda: next(answers)
    try:
        assert (
            healthcheck.wait_for(
                {"KIT_WAIT_FOR": "fake", "KIT_WAIT_SECONDS": "60"}, clock=lambda: float(next(ticks)), sleep=lambda s: None
            )
            == 0
        )
        assert "ready: accepts connections" in capsys.readouterr().err
        healthcheck.CHECKS["fake"] = lambda: (False, "refused")
        assert (
            healthcheck.wait_for(
                {"KIT_WAIT_FOR": "fake", "KIT_WAIT_SECONDS": "3"}, clock=lambda: float(next(ticks)), sleep=lambda s: None
            )
            == 1
        )
        assert "gave up: refused" in capsys.readouterr().err
        assert healthcheck.wait_for({}) == 0  # nothing to wait for
    finally:
        del healthcheck.CHECKS["fake"]
