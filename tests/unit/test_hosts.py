"""cluster.hosts: parsed from invoke.yaml, validated before anything starts, and the services placed on them."""

import dataclasses

import pytest
from invoke import Exit

from cli.settings import cluster_shape
from cluster.hosts import HostSpec
from cluster.multihost import MultiHostCluster
from cluster.topology import TopologyError, plan
from tests.unit.shapes import default_shape, project_context

TWO_HOSTS = [
    {
        "name": "gpu-a",
        "endpoint": "unix:///var/run/docker.sock",
        "address": "192.168.1.10",
        "manager": True,
        "runs": ["namenode", "spark-master", "spark-history", "datanode", "spark-worker"],
    },
    {
        "name": "gpu-b",
        "endpoint": "ssh://lab@192.168.1.11",
        "address": "192.168.1.11",
        "mtu": 1400,
        "runs": ["datanode", "spark-worker"],
    },
]


def shape_from(hosts, **cluster):
    c = project_context()
    c.config.cluster.update({"hosts": hosts, **cluster})
    return cluster_shape(c)


def test_hosts_from_invoke_yaml_become_typed_host_specs_with_mtu_and_manager_defaults():
    shape = shape_from(TWO_HOSTS)
    assert shape.hosts == (
        HostSpec(
            "gpu-a",
            "unix:///var/run/docker.sock",
            "192.168.1.10",
            tuple(TWO_HOSTS[0]["runs"]),
            True,
            1500,
        ),
        HostSpec("gpu-b", "ssh://lab@192.168.1.11", "192.168.1.11", ("datanode", "spark-worker"), False, 1400),
    )
    assert shape.manager is not None and shape.manager.name == "gpu-a"
    assert shape_from([]).hosts == ()  # the project's default: one engine


@pytest.mark.parametrize(
    "hosts, message",
    [
        ("gpu-a", "must be a list of hosts"),
        ([{"name": "a", "endpoint": "unix:///x", "runs": []}], r"cluster.hosts\[0\] lacks address"),
        ([{**TWO_HOSTS[0], "cores": 4}], "unknown key"),
        ([{**TWO_HOSTS[0], "runs": "datanode"}], "must be a list of roles"),
        ([{**TWO_HOSTS[0], "mtu": "big"}], "mtu = 'big' is not an integer"),
        ([{**TWO_HOSTS[0], "manager": "yes"}], "must be true or false"),
        ([{**TWO_HOSTS[0], "mtu": True}], "mtu = True is not an integer"),
        ([{**TWO_HOSTS[0], 7: "x"}], "unknown key"),
    ],
)
def test_a_malformed_host_entry_is_named_in_one_line(hosts, message):
    with pytest.raises(Exit, match=message):
        shape_from(hosts)


def host(name, *runs, manager=False, **changes):
    return HostSpec(name, f"ssh://{name}", f"10.0.{len(name)}.{ord(name[0])}", runs, manager, **changes)


SHAPE = dataclasses.replace(
    default_shape(),
    hosts=(
        host("a", "namenode", "spark-master", "spark-history", "datanode", "spark-worker", manager=True),
        host("bb", "datanode", "spark-worker"),
        host("ccc", "spark-worker"),
    ),
)


def test_services_are_placed_on_their_hosts_one_datanode_and_one_worker_per_host():
    services, _ = plan(SHAPE, host_cpus=8)
    assert [(s.name, s.host) for s in services] == [
        ("namenode", "a"),
        ("datanode-1", "a"),
        ("datanode-2", "bb"),
        ("spark-master", "a"),
        ("spark-worker-1", "a"),
        ("spark-worker-2", "bb"),
        ("spark-worker-3", "ccc"),
        ("spark-history", "a"),
    ]
    worker = services[6]
    # each worker registers under its own name, and its health check looks for that name at the master
    assert worker.command[worker.command.index("--host") + 1] == "spark-worker-3" == worker.healthcheck[-2]
    assert {s.host for s in plan(default_shape(), host_cpus=8)[0]} == {None}  # no hosts: one engine


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"datanodes": 3, "replication": 2}, "cluster.datanodes=3 but 2 host"),
        ({"hosts": SHAPE.hosts[1:]}, "0 managers"),
        ({"hosts": (*SHAPE.hosts, host("dd", "namenode", manager=True))}, "2 managers"),
        ({"hosts": (*SHAPE.hosts, host("dd", "namenode"))}, "namenode runs on 2 hosts"),
        ({"hosts": (*SHAPE.hosts, host("ccc"))}, "names repeat"),
        ({"hosts": (*SHAPE.hosts, host("Big Host"))}, "lower-case"),
        ({"hosts": (*SHAPE.hosts, host("dd", "gpu"))}, "has gpu: roles are"),
        ({"hosts": (*SHAPE.hosts, host("dd", "datanode", "datanode"))}, "names a role twice"),
        ({"hosts": (*SHAPE.hosts, host("dd", mtu=9))}, "mtu=9"),
        ({"hosts": (*SHAPE.hosts, dataclasses.replace(host("dd"), endpoint="dd:2375"))}, "endpoint='dd:2375'"),
        ({"swarm_address_pool": "lan"}, "swarm_address_pool='lan'"),
        ({"hosts": (*SHAPE.hosts, dataclasses.replace(host("dd"), address="box-d.lan"))}, "give its IPv4 address"),
        ({"hosts": (*SHAPE.hosts, dataclasses.replace(host("dd"), endpoint="ssh://a"))}, "endpoints repeat"),
    ],
)
def test_impossible_hosts_are_refused_before_anything_starts(changes, message):
    with pytest.raises(TopologyError, match=message):
        plan(dataclasses.replace(SHAPE, **changes), host_cpus=8)


class FakeEngine:
    def info(self):
        return {"NCPU": 2}


def test_each_service_becomes_a_pinned_swarm_service_with_its_volume_limits_and_labels():
    cluster = MultiHostCluster(SHAPE, FakeEngine(), connect=lambda spec: FakeEngine())
    assert cluster.manager.name == "a" and cluster.client is cluster.hosts["a"].client  # clients start on the manager
    datanode = cluster.service("datanode-2")
    spec = cluster.service_spec(datanode)
    [mount] = spec["mounts"]
    assert (mount["Source"], mount["Target"], mount["Type"]) == (SHAPE.volume_name("datanode-2"), "/data", "volume")
    assert mount["VolumeOptions"]["Labels"] == SHAPE.labels()  # down finds it on its host
    assert spec["container_labels"] == SHAPE.labels("datanode-2") == spec["labels"]
    assert f"CORE-SITE.XML_fs.defaultFS={SHAPE.default_fs}" in spec["env"]
    assert spec["resources"]["Limits"] == {"NanoCPUs": 1_000_000_000, "MemoryBytes": 1 << 30}
    assert spec["restart_policy"]["Condition"] == "any"  # liveness by Swarm; readiness by the kit
    assert "healthcheck" not in spec
    cluster.stop_clients(out=print)  # it keeps track of its clients, as one engine's cluster does
    assert cluster.live.stops == 1 and not cluster.live.containers


def test_hosts_set_from_a_variable_are_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("INVOKE_CLUSTER_HOSTS", "box-a,box-b")  # invoke cannot cast text to a list
    c = project_context()
    c.config.load_shell_env()
    with pytest.raises(Exit, match="not in a variable"):
        cluster_shape(c)


def test_up_recreates_a_service_whose_image_command_or_settings_changed():
    cluster = MultiHostCluster(SHAPE, FakeEngine(), connect=lambda spec: FakeEngine())
    datanode = cluster.service("datanode-2")

    class Found:
        def __init__(self, image="sha256:new", args=datanode.command, env=cluster.service_spec(datanode)["env"], cpus=1):
            container = {"Image": image, "Args": args, "Env": list(reversed(env))}
            limits = {"NanoCPUs": cpus * 1_000_000_000, "MemoryBytes": 1 << 30}
            self.attrs = {"Spec": {"TaskTemplate": {"ContainerSpec": container, "Resources": {"Limits": limits}}}}

    assert cluster._current(Found(), datanode, "sha256:new")
    assert not cluster._current(Found(image="sha256:old"), datanode, "sha256:new")  # images.build ran since
    assert not cluster._current(Found(args=["hdfs", "namenode"]), datanode, "sha256:new")
    assert not cluster._current(Found(env=["HDFS-SITE.XML_dfs.replication=3"]), datanode, "sha256:new")  # a setting changed
    assert not cluster._current(Found(cpus=2), datanode, "sha256:new")  # a limit changed
