import dataclasses
import json
import socket

import docker
import pytest

from cluster.lifecycle import Cluster, ClusterError, spec_digest
from tests.unit.shapes import default_shape

SHAPE = default_shape(project="dlkit-unit")


class FakeEngine:
    """The one engine call planning makes: how many CPUs the Docker host has."""

    # Builds endpoint configs locally; never connects (an explicit version skips the probe).
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")

    def info(self):
        return {"NCPU": 2}


def test_a_configured_ui_port_in_use_is_a_clear_error_naming_its_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = Cluster(dataclasses.replace(SHAPE, spark_history_ui_port=port), FakeEngine())
        with pytest.raises(ClusterError, match=f"127.0.0.1:{port} .*cluster.spark_history_ui_port"):
            cluster._check_port_free(cluster.service("spark-history"))


def test_containers_publish_uis_on_loopback_only_and_carry_the_project_label():
    cluster = Cluster(SHAPE, FakeEngine())
    kwargs = cluster.create_kwargs(cluster.service("namenode"), "dlkit-unit-net")
    assert kwargs["ports"] == {"9870/tcp": ("127.0.0.1", None)}
    assert kwargs["labels"] == {"dlkit.project": "dlkit-unit", "dlkit.service": "namenode", "dlkit.spec": spec_digest(kwargs)}
    assert kwargs["volumes"] == {"dlkit-unit-namenode": {"bind": "/data", "mode": "rw"}}
    assert kwargs["name"] == "dlkit-unit-namenode" and kwargs["hostname"] == "namenode"
    assert "ports" not in cluster.create_kwargs(cluster.service("datanode-1"), "dlkit-unit-net")


def status_report(states, remaining=10**9, dead=0):
    return {
        "services": [
            {"name": name, "state": state, "health": "healthy" if state == "running" else None}
            for name, state in states.items()
        ],
        "hdfs": {"available": True, "remaining_bytes": remaining, "dead_datanodes": dead},
    }


def test_a_half_started_cluster_gets_one_line_with_the_next_step():
    from cluster.lifecycle import diagnose

    report = status_report({"namenode": "running", "datanode-1": "exited", "spark-master": "missing"})
    line = diagnose(report)
    assert "half-started" in line and "missing spark-master" in line and "stopped datanode-1" in line
    assert "./kit up" in line
    assert (
        diagnose(status_report({"namenode": "missing", "spark-master": "missing"})) == "the cluster is not up: run './kit up'"
    )
    assert diagnose(status_report({"namenode": "running"})) is None


def test_too_little_hdfs_space_is_refused_with_what_to_do():
    from cluster.lifecycle import space_problem

    assert space_problem(status_report({}, remaining=5 * 10**8), 10**9).startswith("HDFS has 0.50 GB free")
    assert space_problem(status_report({}, remaining=2 * 10**9), 10**9) is None


def test_hdfs_folders_are_made_and_handed_to_the_job_user_in_one_webhdfs_script():
    from cluster.lifecycle import hdfs_folders_script

    script = hdfs_folders_script()
    calls = script.split("; ")[1:]
    assert script.startswith("set -e; ") and all("--fail-with-body" in call for call in calls)
    assert sum("op=MKDIRS" in call for call in calls) == 5
    assert "/webhdfs/v1/spark-events?op=SETOWNER&owner=spark&group=spark&user.name=hadoop" in script
    assert "/webhdfs/v1/tmp?op=SETPERMISSION&permission=1777&user.name=hadoop" in script


class FakeNamenode:
    status = "running"

    def __init__(self, exit_code, output):
        self.exit_code, self.output, self.commands = exit_code, output, []

    def exec_run(self, command):
        self.commands.append(command)
        return self.exit_code, self.output


def cluster_with_namenode(namenode):
    cluster = Cluster(SHAPE, FakeEngine())
    cluster.container = lambda name: namenode if name == "namenode" else None
    return cluster


def test_webhdfs_reads_a_file_tells_a_missing_one_and_names_any_other_failure():
    found = FakeNamenode(0, b'{"checksum": "abc"}\n200')
    assert cluster_with_namenode(found).webhdfs_read("/data/cifar10/manifest.json") == '{"checksum": "abc"}'
    assert "http://localhost:9870/webhdfs/v1/data/cifar10/manifest.json?op=OPEN&user.name=spark" in found.commands[0]
    missing = FakeNamenode(0, b'{"RemoteException":{"exception":"FileNotFoundException"}}\n404')
    assert cluster_with_namenode(missing).webhdfs_read("/data/x") is None
    with pytest.raises(ClusterError, match="(?s)curl exit 0, HTTP 403.*SafeModeException"):
        cluster_with_namenode(FakeNamenode(0, b'{"RemoteException":"SafeModeException"}\n403')).webhdfs_read("/x")
    with pytest.raises(ClusterError, match="curl exit 7"):
        cluster_with_namenode(FakeNamenode(7, b"curl: (7) Failed to connect\n000")).webhdfs_read("/x")


class FakeResource:
    def __init__(self, name, error=None):
        self.name, self.error, self.removed = name, error, False

    def remove(self, **kwargs):
        if self.error:
            raise self.error
        self.removed = True


def test_down_carries_on_past_a_step_that_fails_and_lists_what_it_could_not_remove():
    in_use = docker.errors.APIError("network has active endpoints", explanation="network has active endpoints")
    containers = [FakeResource("dlkit-unit-namenode"), FakeResource("dlkit-unit-gone", docker.errors.NotFound("x"))]
    network, volume = FakeResource("dlkit-unit-net", in_use), FakeResource("dlkit-unit-namenode")

    class Engine(FakeEngine):
        networks = type("Networks", (), {"list": staticmethod(lambda filters: [network])})()
        volumes = type("Volumes", (), {"list": staticmethod(lambda filters: [volume])})()

    cluster = Cluster(SHAPE, Engine())
    cluster.containers = lambda: containers
    failed = cluster.down(volumes=True, say=lambda line: None)
    assert failed == ["network dlkit-unit-net: network has active endpoints"]
    assert containers[0].removed and volume.removed  # the volumes went although the network stayed


def test_a_webhdfs_path_is_escaped_so_it_cannot_add_operations_or_users():
    namenode = FakeNamenode(0, b"x\n200")
    cluster_with_namenode(namenode).webhdfs_read("/runs/a b?op=DELETE&user.name=hadoop#")
    url = next(part for part in namenode.commands[0] if part.startswith("http://"))
    assert url == "http://localhost:9870/webhdfs/v1/runs/a%20b%3Fop%3DDELETE%26user.name%3Dhadoop%23?op=OPEN&user.name=spark"


def test_a_docker_exec_that_hangs_is_stopped_and_named_with_its_last_output():
    hung = FakeNamenode(124, b"Connecting to namenode:8020\nRetrying connect (3)\n")
    with pytest.raises(ClusterError, match=r"'hdfs dfs -ls /' did not answer within 300s; its last output: .*Retrying connect"):
        cluster_with_namenode(hung).hdfs(["dfs", "-ls", "/"])
    assert hung.commands[0][:2] == ["timeout", "300"]


class ListingNamenode(FakeNamenode):
    """Answers each WebHDFS LISTSTATUS with the folder's entries."""

    def __init__(self, folders):
        super().__init__(0, b"")
        self.folders = folders

    def exec_run(self, command):
        self.commands.append(command)
        url = next(part for part in command if part.startswith("http://"))
        path = url.split("/webhdfs/v1", 1)[1].split("?", 1)[0]
        if path not in self.folders:
            return 0, b'{"RemoteException":{}}\n404'
        entries = [{"pathSuffix": name, "type": kind} for name, kind in self.folders[path]]
        return 0, json.dumps({"FileStatuses": {"FileStatus": entries}}).encode() + b"\n200"


def test_status_finds_what_killed_jobs_left_in_hdfs():
    namenode = ListingNamenode(
        {
            "/data": [("cifar10", "DIRECTORY"), ("cifar10.staging-1a2b3c4d", "DIRECTORY"), ("cifar10.retired-9f", "DIRECTORY")],
            "/runs": [("run-a", "DIRECTORY"), ("run-b.partial", "DIRECTORY"), ("notes.partial", "FILE")],
        }
    )
    left = cluster_with_namenode(namenode).hdfs_leftovers("/data/cifar10", "/runs")
    assert left == {
        "staging": ["/data/cifar10.retired-9f", "/data/cifar10.staging-1a2b3c4d"],
        "interrupted_swap": [],
        "interrupted_runs": ["run-b"],
    }
    assert cluster_with_namenode(ListingNamenode({})).hdfs_leftovers("/data/cifar10", "/runs") == {
        "staging": [],
        "interrupted_swap": [],
        "interrupted_runs": [],
    }
    # killed between the swap's two renames: the copy is the only data, not a leftover to remove
    swapping = ListingNamenode({"/data": [("cifar10.staging-1a2b3c4d", "DIRECTORY")], "/runs": []})
    left = cluster_with_namenode(swapping).hdfs_leftovers("/data/cifar10", "/runs")
    assert left["staging"] == [] and left["interrupted_swap"] == ["/data/cifar10.staging-1a2b3c4d"]


class ProbedContainer:
    """A running container whose health check (an exec) answers `ready`, counting the calls."""

    def __init__(self, started="2026-11-24T05:00:00Z", ready=True):
        self.id, self.status, self.ready, self.execs = "c1", "running", ready, 0
        self.attrs = {"State": {"StartedAt": started, "Health": {"Status": "healthy", "Log": []}}}

    def exec_run(self, command, **kwargs):
        self.execs += 1
        return (0 if self.ready else 1), b"checked"


def test_status_reuses_a_passed_probe_for_a_while_and_a_restart_makes_it_stale(monkeypatch):
    import cluster.lifecycle as lifecycle

    monkeypatch.setattr(lifecycle, "exec_bounded", lambda container, command, seconds, what: container.exec_run(command))
    now = [1000.0]
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: now[0])
    cluster = Cluster(SHAPE, FakeEngine())
    container = ProbedContainer()
    assert cluster._health_now("namenode", container) == "healthy" and container.execs == 1
    now[0] += 20
    assert cluster._health_now("namenode", container) == "healthy" and container.execs == 1  # reused
    now[0] += 20
    container.ready = False  # Docker's own "healthy" is minutes old: it is not believed
    assert cluster._health_now("namenode", container) == "unhealthy" and container.execs == 3  # tried twice
    container.ready = True
    assert cluster._health_now("namenode", container) == "healthy" and container.execs == 4
    container.attrs["State"]["StartedAt"] = "2026-11-24T05:01:00Z"  # restarted since
    assert cluster._health_now("namenode", container) == "healthy" and container.execs == 5


class PlannedImage:
    id = "sha256:new"


class MadeContainer:
    """A container as Docker describes it: the image it was made from and its labels."""

    status = "running"

    def __init__(self, kwargs, image=PlannedImage.id):
        self.attrs = {"Image": image, "Config": {"Labels": kwargs["labels"]}}
        self.removed = self.started = False

    def remove(self, force=False):
        self.removed = True

    def start(self):
        self.started = True


def test_up_recreates_a_container_made_from_another_image_or_settings_unless_a_job_runs():
    created = []

    class Engine(FakeEngine):
        class containers:
            create = staticmethod(lambda **kwargs: created.append(MadeContainer(kwargs)) or created[-1])

    def cluster_of(shape):
        cluster = Cluster(shape, Engine())
        cluster._check_port_free = lambda service: None
        cluster._volume = lambda suffix: None
        return cluster

    cluster, network = cluster_of(SHAPE), type("Network", (), {"name": "n"})
    planned = cluster.create_kwargs(cluster.service("namenode"), "n")
    older_kit = {**planned, "labels": {key: v for key, v in planned["labels"].items() if key != "dlkit.spec"}}
    edited = cluster_of(dataclasses.replace(SHAPE, replication=1))  # cluster.replication: 1 in invoke.yaml
    cases = {
        "current": (MadeContainer(planned), [], False),
        "an older image": (MadeContainer(planned, image="sha256:old"), [], True),
        "an edited setting": (MadeContainer(edited.create_kwargs(edited.service("namenode"), "n")), [], True),
        "a kit that did not label it": (MadeContainer(older_kit), [], True),
        "an older image, while a job runs": (MadeContainer(planned, image="sha256:old"), ["dlkit-unit-client-1"], False),
    }
    for why, (container, jobs, recreated) in cases.items():
        lines = []
        cluster.container = lambda name, container=container: container
        created.clear()
        cluster._start(cluster.service("namenode"), network, lines.append, jobs, PlannedImage.id)
        assert container.removed == recreated, why
        assert [c.started for c in created] == ([True] if recreated else []), why
        if recreated:
            assert lines == [
                "namenode: its image or settings changed since it was created: recreating it (its volume is kept)",
                "namenode: creating dlkit-unit-namenode",
            ], why
    assert "dlkit-unit-client-1 is running: it keeps them until an 'up' with no job running" in lines[0]
    assert cluster.create_kwargs(cluster.service("namenode"), "n")["labels"] == planned["labels"]  # stable
