"""CIFAR-10 staging and EDA on the real cluster, with a small synthetic dataset."""

from __future__ import annotations

import json
import shutil

from jobs.lib.cifar import FOLDER, RECORD_BYTES
from tests.integration.support import SHARDS, SOURCE, TEST_RECORDS, TRAIN_PER_BATCH, readable, result_of, run_job


def test_staging_writes_every_record_into_the_requested_shards(staged):
    assert staged["up_to_date"] is False
    assert staged["train_records"] == 5 * TRAIN_PER_BATCH and staged["test_records"] == TEST_RECORDS
    assert staged["train_class_counts"] == [5 * TRAIN_PER_BATCH // 10] * 10
    assert staged["test_class_counts"] == [TEST_RECORDS // 10] * 10
    assert staged["shards"] == SHARDS and len(staged["shard_bytes"]) == SHARDS


def test_the_staged_layout_in_hdfs_is_complete(cluster, staged):
    listing = cluster.hdfs(["dfs", "-ls", "-R", "/data/cifar10-test"])
    files = sorted(
        line.split()[-1].removeprefix("/data/cifar10-test/") for line in listing.splitlines() if line.startswith("-")
    )
    assert files == sorted(
        [
            "manifest.json",
            *(f"raw/data_batch_{i}.bin" for i in range(1, 6)),
            "raw/test_batch.bin",
            *(f"{split}/part-{k:05d}.tfrecord" for split in ("train", "test") for k in range(SHARDS)),
        ]
    )


def test_every_staged_record_decodes_to_its_source_record(cluster, staged, source, target):
    code, output = run_job(cluster, "/opt/dlkit/tests/integration/jobs/verify_staged.py", [target, SOURCE], source, spark=False)
    assert code == 0, output[-4000:]
    report = result_of(output)
    assert report["checked"] == 5 * TRAIN_PER_BATCH + TEST_RECORDS
    assert report["mismatches"] == []
    assert report["shapes"] == [[32, 32, 3]]


def spark_applications(cluster) -> int:
    master = cluster.fetch_json("spark-master", "http://localhost:8080/json/")
    return len(master["activeapps"]) + len(master["completedapps"])


def test_staging_the_same_inputs_again_is_a_no_op_that_starts_no_spark_application(cluster, staged, source, target):
    applications = spark_applications(cluster)
    code, output = run_job(
        cluster, "/opt/dlkit/jobs/stage_cifar.py", ["--source", SOURCE, "--target", target, "--shards", str(SHARDS)], source
    )
    assert code == 0, output[-4000:]
    again = result_of(output)
    assert again["up_to_date"] is True and again["checksum"] == staged["checksum"]
    assert spark_applications(cluster) == applications


def test_eda_counts_labels_exactly_and_writes_its_figures(cluster, staged, source, target, tmp_path):
    code, output = run_job(
        cluster,
        "/opt/dlkit/jobs/eda_cifar.py",
        ["--data", target, "--out", "/home/spark/out", "--fraction", "1"],
        source,
        collect=("/home/spark/out", tmp_path),
    )
    assert code == 0, output[-4000:]
    report = json.loads((tmp_path / "eda.json").read_text())
    assert list(report["splits"]["train"]["label_counts"].values()) == [5 * TRAIN_PER_BATCH // 10] * 10
    assert list(report["splits"]["test"]["label_counts"].values()) == [TEST_RECORDS // 10] * 10
    histogram = report["splits"]["train"]["histograms"]["brightness"]["counts"]
    assert sum(histogram) == 5 * TRAIN_PER_BATCH
    assert 0 < report["global_mean_pixel_value"] < 255
    for name in report["figures"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert set(report["figures"]) == {"labels.png", "brightness_contrast.png", "pixel_range.png", "samples.png"}


def test_a_corrupt_input_fails_with_file_and_offset_and_leaves_nothing_in_hdfs(cluster, source, tmp_path):
    corrupt = tmp_path / FOLDER
    shutil.copytree(source, corrupt)
    data = bytearray((corrupt / "data_batch_2.bin").read_bytes())
    data[3 * RECORD_BYTES] = 12  # the label byte of record 3
    (corrupt / "data_batch_2.bin").write_bytes(bytes(data))
    target = cluster.shape.default_fs + "/data/cifar10-corrupt"
    code, output = run_job(
        cluster,
        "/opt/dlkit/jobs/stage_cifar.py",
        ["--source", SOURCE, "--target", target, "--shards", str(SHARDS)],
        readable(corrupt),
    )
    assert code == 1, output[-4000:]
    assert f"data_batch_2.bin: record 3 at byte offset {3 * RECORD_BYTES} has label 12, outside 0-9" in output
    assert "Traceback" not in output.split("stage: bad input")[-1]
    leftovers = [line.split()[-1] for line in cluster.hdfs(["dfs", "-ls", "/data"]).splitlines() if "cifar10-corrupt" in line]
    assert leftovers == []
