import dataclasses

import pytest

from cluster.topology import TopologyError, plan
from tests.unit.shapes import default_shape

DEFAULT = default_shape()


def shape(**changes):
    return dataclasses.replace(DEFAULT, **changes)


def test_default_cluster_has_two_barrier_slots_of_two_cores():
    services, warnings = plan(DEFAULT, host_cpus=8)
    assert warnings == []
    assert [s.name for s in services] == [
        "namenode",
        "datanode-1",
        "datanode-2",
        "spark-master",
        "spark-worker",
        "spark-history",
    ]
    env = services[3].environment
    assert env["SPARK-DEFAULTS.CONF_spark.executor.cores"] == "2"
    assert env["SPARK-DEFAULTS.CONF_spark.task.cpus"] == "2"
    assert env["SPARK-DEFAULTS.CONF_spark.executor.memory"] == "2g"
    assert env["SPARK-DEFAULTS.CONF_spark.scheduler.minRegisteredResourcesRatio"] == "1.0"
    assert DEFAULT.executors == 2
    worker = services[4]
    assert worker.command[worker.command.index("--cores") + 1] == "4"
    assert worker.command[worker.command.index("--memory") + 1] == "4g"


def test_every_datanode_gets_its_own_volume_and_the_namenode_waits_for_all_of_them():
    services, _ = plan(shape(datanodes=3, replication=2), host_cpus=8)
    volumes = [suffix for s in services for suffix in s.volumes]
    assert volumes == ["namenode", "datanode-1", "datanode-2", "datanode-3"]
    assert services[0].healthcheck[-1] == "3"
    assert services[0].environment["HDFS-SITE.XML_dfs.replication"] == "2"


def test_no_host_port_is_fixed_by_default():
    services, _ = plan(DEFAULT, host_cpus=8)
    assert {s.host_port for s in services} == {0}
    assert {s.name for s in services if s.ui_port} == {"namenode", "spark-master", "spark-worker", "spark-history"}


def test_cpu_limits_are_capped_to_the_host_with_a_warning():
    services, warnings = plan(DEFAULT, host_cpus=2)
    assert max(s.cpus for s in services) == 2
    assert len(warnings) == 1 and "capped at 2" in warnings[0]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"executor_cores": 6}, "exceeds cluster.worker_cores=4"),
        ({"executor_cores": 3}, "not a multiple"),
        ({"executor_memory_gb": 3}, "2 executors x 3 GB do not fit"),
        ({"replication": 3}, "cannot have more replicas than datanodes"),
        ({"datanodes": 0, "replication": 0}, "datanodes must be at least 1"),
        ({"worker_container_memory_gb": 4}, "leaves no room"),
        ({"project": "Bad Name"}, "cluster.project"),
        ({"spark_history_ui_port": 70000}, "not a port"),
    ],
)
def test_impossible_shapes_are_refused_before_anything_starts(changes, message):
    with pytest.raises(TopologyError, match=message):
        plan(shape(**changes), host_cpus=8)


def test_everything_starts_together_and_what_needs_another_service_waits_for_it_in_its_entrypoint():
    services, _ = plan(DEFAULT, host_cpus=8)
    assert {s.stage for s in services} == {0}
    waits = {s.name: s.environment.get("KIT_WAIT_FOR") for s in services}
    assert waits["spark-worker"] == "port spark-master:7077"  # its first registration must not miss the master
    assert waits["spark-history"].startswith("http ") and "/spark-events?op=GETFILESTATUS" in waits["spark-history"]
    assert {name for name, wait in waits.items() if wait} == {"spark-worker", "spark-history"}


def test_every_hdfs_client_keeps_writing_when_a_datanode_of_two_is_lost():
    # the Spark JVMs too: the driver's event-log writer failed with "Failed to replace a bad datanode"
    services, _ = plan(DEFAULT, host_cpus=8)
    key = "HDFS-SITE.XML_dfs.client.block.write.replace-datanode-on-failure.policy"
    assert {s.name: s.environment.get(key) for s in services} == {s.name: "NEVER" for s in services}


def test_every_hdfs_client_creates_files_with_the_clusters_replication():
    # a Spark JVM without it wrote event logs with 3 replicas on 2 datanodes: under-replicated forever
    services, _ = plan(shape(datanodes=3, replication=2), host_cpus=8)
    key = "HDFS-SITE.XML_dfs.replication"
    assert {s.name: s.environment.get(key) for s in services} == {s.name: "2" for s in services}


def test_every_name_of_a_project_comes_from_its_shape_and_its_selector_finds_its_labels():
    lab = shape(project="lab-a")
    services, _ = plan(lab, host_cpus=4)
    names = [s.container_name(lab) for s in services] + [lab.network, lab.volume_name("namenode"), lab.new_client_name()]
    assert all(name.startswith("lab-a-") for name in names)
    assert lab.new_client_name() != lab.new_client_name()  # jobs run side by side
    key, value = lab.selector["label"].split("=")
    assert lab.labels("namenode")[key] == value == "lab-a" and lab.labels()[key] == value
    assert shape(project="lab-b").selector != lab.selector


def test_a_jobs_first_storage_retry_comes_after_the_namenode_calls_a_lost_datanode_stale():
    # sooner, the retry's new block may be sent through the lost datanode again, and wait out the timeout
    from jobs.lib.storage import FIRST_RETRY_SECONDS

    services, _ = plan(DEFAULT, host_cpus=8)
    [namenode] = [s for s in services if s.name == "namenode"]
    stale_ms = int(namenode.environment["HDFS-SITE.XML_dfs.namenode.stale.datanode.interval"])
    heartbeat_s = int(namenode.environment["HDFS-SITE.XML_dfs.heartbeat.interval"])
    assert stale_ms >= 3 * heartbeat_s * 1000  # the namenode's own floor (3 heartbeats)
    assert FIRST_RETRY_SECONDS * 1000 > stale_ms


def test_a_failed_block_copy_is_retried_within_the_minute_status_allows_for_re_replication():
    # the namenode first sends the copy to a datanode that is stale (the only one left) and, by
    # default, waits 300 s, checked every 300 s, before it tries again
    services, _ = plan(DEFAULT, host_cpus=8)
    [namenode] = [s for s in services if s.name == "namenode"]
    retry_s = int(namenode.environment["HDFS-SITE.XML_dfs.namenode.reconstruction.pending.timeout-sec"])
    assert 2 * retry_s + 3 <= 60  # timed out after up to twice the timeout, then the next 3 s redundancy pass
