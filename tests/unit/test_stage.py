import pytest

from jobs.lib.cifar import FOLDER, RECORD_BYTES
from jobs.lib.storage import LocalStorage
from jobs.stage_cifar import (
    StagingError,
    explode_file,
    find_inputs,
    first_indices,
    record_error_in,
    shard_partition,
    upload_raw_files,
)
from jobs.synthetic_cifar import write_dataset
from tests.unit.shapes import project_context


def test_records_get_split_wide_indices_and_round_robin_shards(tmp_path):
    write_dataset(tmp_path, train_per_batch=30, test_records=20, seed=0)
    inputs = find_inputs(str(tmp_path))
    offsets = first_indices(inputs)
    assert offsets["data_batch_1.bin"] == ("train", 0) and offsets["data_batch_3.bin"] == ("train", 60)
    assert offsets["test_batch.bin"] == ("test", 0)
    data = (tmp_path / FOLDER / "data_batch_2.bin").read_bytes()
    keyed = list(explode_file(("hdfs://nn/raw/data_batch_2.bin", data), offsets, shards=4))
    assert [key for key, _ in keyed[:3]] == [("train", 2), ("train", 3), ("train", 0)]
    assert [value[0] for _, value in keyed[:3]] == [30, 31, 32]
    assert shard_partition(("test", 1), shards=4) == 5


def test_missing_or_truncated_inputs_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(StagingError, match="missing data_batch_1.bin"):
        find_inputs(str(tmp_path))
    write_dataset(tmp_path, train_per_batch=10, test_records=10, seed=0)
    with open(tmp_path / FOLDER / "test_batch.bin", "ab") as handle:
        handle.write(b"\0" * 5)
    with pytest.raises(ValueError, match=rf"test_batch.bin: .* offset {10 * RECORD_BYTES}"):
        find_inputs(str(tmp_path))


def test_a_record_error_is_found_inside_a_spark_failure_message():
    message = (
        'An error occurred while calling collect.\n  File "/x/cifar.py", line 40\n'
        "jobs.lib.cifar.RecordError: data_batch_1.bin: record 3 at byte offset 9219 has label 12, outside 0-9\n"
    )
    assert record_error_in(RuntimeError(message)) == "data_batch_1.bin: record 3 at byte offset 9219 has label 12, outside 0-9"


def test_uploads_copy_every_input_and_report_running_totals(tmp_path, capsys):
    write_dataset(tmp_path / "source", train_per_batch=10, test_records=10, seed=0)
    inputs = find_inputs(str(tmp_path / "source"))
    storage = LocalStorage(str(tmp_path / "target"))
    upload_raw_files(storage, inputs, str(tmp_path / "target" / "staging"))
    for item in inputs:
        assert (tmp_path / "target" / "staging" / "raw" / item["name"]).read_bytes() == open(item["path"], "rb").read()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(inputs) + 1
    assert f"file {len(inputs)}/{len(inputs)}" in lines[-2] and lines[-1].startswith(f"stage: uploaded {len(inputs)} files")


def test_an_unchanged_dataset_is_recognised_as_staged_without_running_a_job(tmp_path):
    from cli.pipeline import already_staged
    from jobs.stage_cifar import fingerprint, staged_already

    write_dataset(tmp_path, train_per_batch=10, test_records=10, seed=0)
    expected = fingerprint(find_inputs(str(tmp_path)), 4)
    manifest = manifest_of(expected)

    class Backend:
        data_url = "hdfs://namenode:8020/data/cifar10"
        stored = None

        def read_json_if_exists(self, url):
            assert url == self.data_url + "/manifest.json"
            return self.stored

    backend = Backend()
    assert already_staged(backend, tmp_path, 4) is None  # nothing staged yet
    backend.stored = manifest
    result = already_staged(backend, tmp_path, 4)
    assert result["up_to_date"] is True and result["train_records"] == 10 and result["shard_bytes"] == [5] * 4
    assert already_staged(backend, tmp_path, 8) is None  # another shard count
    with open(tmp_path / FOLDER / "test_batch.bin", "r+b") as handle:
        handle.write(b"\x01")  # same length, other bytes
    assert already_staged(backend, tmp_path, 4) is None
    assert not staged_already(None, expected)


def manifest_of(expected):
    return {
        **expected,
        "checksum": "c" * 64,
        "staging_seconds": 3.0,
        "splits": {
            split: {"records": 10, "class_counts": [1] * 10, "shards": [{"bytes": 5}] * 4} for split in ("train", "test")
        },
    }


class FakeClusterBackend:
    """What stage_with asks of the containerised backend, with a status report and a stored manifest."""

    name, data_url = "cluster", "hdfs://namenode:8020/data/cifar10"

    def __init__(self, report, manifest=None):
        self.report, self.manifest, self.jobs = report, manifest, []
        self.cluster = self
        self.shape = type("Shape", (), {"replication": 2})()

    def status(self):
        return self.report

    def read_json_if_exists(self, url):
        return self.manifest

    def run(self, job, args, **kwargs):
        self.jobs.append(job)
        raise AssertionError("no job expected")


def status_report(up=True, remaining_bytes=10**12):
    state = "running" if up else "missing"
    return {
        "services": [{"name": "namenode", "state": state, "health": "healthy" if up else None}],
        "hdfs": {"available": up, "dead_datanodes": 0, "remaining_bytes": remaining_bytes},
    }


def test_staging_on_a_cluster_that_is_down_says_so_before_looking_for_a_manifest(tmp_path):
    from invoke import Exit

    from cli.pipeline import stage_with

    write_dataset(tmp_path, train_per_batch=10, test_records=10, seed=0)
    c = project_context()
    c.config.data.shards = 4
    backend = FakeClusterBackend(status_report(up=False))
    backend.read_json_if_exists = None  # must not be reached
    with pytest.raises(Exit, match="the cluster is not up: run './kit up'"):
        stage_with(c, backend, tmp_path / FOLDER)


def test_staged_inputs_are_not_refused_for_space_they_would_not_use_but_new_ones_are(tmp_path):
    from invoke import Exit

    from cli.pipeline import stage_with
    from jobs.stage_cifar import fingerprint

    write_dataset(tmp_path, train_per_batch=10, test_records=10, seed=0)
    c = project_context()
    c.config.data.shards = 4
    full = status_report(remaining_bytes=1000)
    staged = FakeClusterBackend(full, manifest_of(fingerprint(find_inputs(str(tmp_path)), 4)))
    assert stage_with(c, staged, tmp_path / FOLDER)["up_to_date"] is True and staged.jobs == []
    with pytest.raises(Exit, match="nothing was staged: HDFS has 0.00 GB free"):
        stage_with(c, FakeClusterBackend(full, manifest=None), tmp_path / FOLDER)


def test_a_swap_killed_between_its_renames_is_finished_or_undone_by_the_next_staging(tmp_path):
    from jobs.lib.storage import LocalStorage
    from jobs.stage_cifar import finish_interrupted_swap

    storage, target = LocalStorage(str(tmp_path)), str(tmp_path / "cifar10")
    (tmp_path / "cifar10.retired-aaaa").mkdir()  # the old staging, renamed away
    (tmp_path / "cifar10.staging-bbbb").mkdir()  # the new one, complete: its manifest is written last
    (tmp_path / "cifar10.staging-bbbb" / "manifest.json").write_text("{}")
    finish_interrupted_swap(storage, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10"]
    assert (tmp_path / "cifar10" / "manifest.json").exists()

    (tmp_path / "cifar10").rename(tmp_path / "cifar10.retired-cccc")  # killed before the new one was complete
    (tmp_path / "cifar10.staging-dddd").mkdir()
    finish_interrupted_swap(storage, target)
    assert (tmp_path / "cifar10" / "manifest.json").exists()  # the old staging is back
    assert not list(tmp_path.glob("cifar10.retired-*"))
