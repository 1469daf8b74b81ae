"""Distributed training on the real cluster: FILE sharding, chief-only writes, slots.

The 1- and 2-slot runs are the tiny bench's (conftest.bench_runs): the same jobs, run once."""

from __future__ import annotations

import json

import pytest

from tests.integration.support import (
    SHARDS,
    TEST_RECORDS,
    TRAIN_PER_BATCH,
    result_of,
    run_job,
    train,
    wait_until_fully_replicated,
)


def hdfs_json(cluster, path: str):
    text = cluster.webhdfs_read(path)  # no JVM to start, unlike `hdfs dfs -cat`
    assert text is not None, f"{path} is not in HDFS"
    return json.loads(text)


def runs_in_hdfs(cluster) -> set[str]:
    return {entry["pathSuffix"] for entry in cluster.webhdfs_list("/runs")}


@pytest.fixture(scope="module")
def two_slots(bench_runs):
    assert "train: epoch 2/2" in bench_runs["output"]  # the chief's progress reached the driver
    row = next(row for row in bench_runs["results"]["configurations"] if row["slots"] == 2)
    return {**row, "folder": bench_runs["runs"][2]}


def test_two_workers_read_disjoint_file_sets_that_cover_every_shard(cluster, two_slots):
    evidence = hdfs_json(cluster, f"{two_slots['folder']}/sharding.json")
    assert [e["worker"] for e in evidence] == [0, 1]
    first, second = (set(e["train_files"]) for e in evidence)
    assert first and second and not first & second
    assert first | second == {f"train/part-{k:05d}.tfrecord" for k in range(SHARDS)}
    assert sum(e["train_records_in_files"] for e in evidence) == 5 * TRAIN_PER_BATCH
    read = [{name for name, n in e["records_read"].items() if name.startswith("train/") and n > 0} for e in evidence]
    for entry, files in zip(evidence, read):
        assert files and files <= set(entry["train_files"]), entry
    # coverage from the records actually read, not only the files opened
    assert read[0] | read[1] == {f"train/part-{k:05d}.tfrecord" for k in range(SHARDS)} and not read[0] & read[1]


def test_only_the_chief_writes_the_run_folder(cluster, two_slots):
    folder = two_slots["folder"]
    evidence = hdfs_json(cluster, f"{folder}/sharding.json")
    # every storage change of each worker, tallied by the storage layer: worker 1 made none
    assert evidence[1]["storage_writes"] == {} and evidence[0]["storage_writes"].get("write", 0) > 0, evidence
    listing = cluster.hdfs(["dfs", "-ls", "-R", folder])
    paths = {line.split()[-1].removeprefix(folder + "/") for line in listing.splitlines() if line.startswith(("-", "d"))}
    checkpoint = {"checkpoint", "weights.index", "weights.data-00000-of-00001", "state.json", "best.npz"}
    expected = {"settings.json", "attempts.json", "progress.jsonl", "final_model.keras", "metrics.json", "sharding.json"}
    expected |= {"checkpoints"} | {f"checkpoints/epoch-000{e}" for e in (1, 2)}
    expected |= {f"checkpoints/epoch-000{e}/{name}" for e in (1, 2) for name in checkpoint}
    traced = {path for path in paths if path.split("/")[0] == "profile"}  # the bench's --profile: the chief's trace
    assert any(path.endswith(".xplane.pb") for path in traced), sorted(traced)
    assert paths - traced == expected, sorted((paths - traced) ^ expected)
    assert folder.rsplit("/", 1)[-1] + ".partial" not in runs_in_hdfs(cluster)
    metrics = hdfs_json(cluster, f"{folder}/metrics.json")
    assert metrics["slots"] == 2 and metrics["global_batch"] == 32 and metrics["epochs_run"] == 2
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]
    assert metrics["test_accuracy"] == two_slots["test_accuracy"]


def test_the_saved_model_reproduces_the_reported_test_accuracy(cluster, two_slots, target, source):
    code, output = run_job(
        cluster,
        "/opt/dlkit/tests/integration/jobs/evaluate_model.py",
        [cluster.shape.default_fs + two_slots["folder"], target],
        source,
        spark=False,
    )
    assert code == 0, output[-4000:]
    reloaded = result_of(output)
    assert reloaded["test_accuracy"] == pytest.approx(two_slots["test_accuracy"], abs=1.5 / TEST_RECORDS)


def test_a_one_slot_run_reads_every_shard(cluster, bench_runs):
    assert bench_runs["results"]["configurations"][0]["slots"] == 1
    evidence = hdfs_json(cluster, f"{bench_runs['runs'][1]}/sharding.json")
    assert len(evidence) == 1 and len(evidence[0]["train_files"]) == SHARDS


def test_more_slots_than_the_cluster_has_fail_before_training(cluster, staged, target, source):
    code, output = train(cluster, target, source, slots=3, epochs=1, run_id="it-too-many")
    assert code == 1
    assert "asked for 3 slots of 2 cores, but the cluster has 2 free" in output
    assert not {run for run in runs_in_hdfs(cluster) if run.startswith("it-too-many")}


def test_after_the_sessions_jobs_every_hdfs_block_has_the_clusters_replication(cluster):
    # Runs last: event logs, staging, checkpoints and models of every job so far. Spark's own
    # HDFS clients once wrote with replication 3 on this 2-datanode cluster, under-replicated for ever.
    wait_until_fully_replicated(cluster, ("/",), 90)  # a datanode restarted by a fault test is re-replicated to meanwhile
    assert "replication=3" not in cluster.hdfs(["fsck", "/spark-events", "-files", "-blocks"])
    assert cluster.status()["hdfs"]["under_replicated_blocks"] == 0
