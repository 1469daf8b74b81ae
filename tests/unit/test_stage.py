import pytest

from jobs.cifar import FOLDER, RECORD_BYTES
from jobs.stage_cifar import (StagingError, explode_file, find_inputs, first_indices, record_error_in, shard_partition,
                               upload_raw_files)
from jobs.storage import LocalStorage
from jobs.synthetic_cifar import write_dataset


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
    message = ("An error occurred while calling collect.\n  File \"/x/cifar.py\", line 40\n"
               "jobs.cifar.RecordError: data_batch_1.bin: record 3 at byte offset 9219 has label 12, outside 0-9\n")
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
    manifest = {**expected, "checksum": "c" * 64, "staging_seconds": 3.0,
                "splits": {split: {"records": 10, "class_counts": [1] * 10, "shards": [{"bytes": 5}] * 4}
                           for split in ("train", "test")}}

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
