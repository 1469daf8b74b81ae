"""Stage CIFAR-10 batch files as TFRecord shards: parsed and written in the executors.

Layout under the target (e.g. hdfs://namenode:8020/data/cifar10):
    raw/<batch files>   train/part-NNNNN.tfrecord   test/part-NNNNN.tfrecord   manifest.json

Everything is written to a temporary sibling folder and renamed into place at the end, so the
target is either absent, the previous complete staging, or the new complete one. The same
inputs and shard count make a second run a no-op (unless --force).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from jobs.lib.cifar import FOLDER, NUM_CLASSES, TEST_FILES, TRAIN_FILES, RecordError, check_length, parse_records, split_of
from jobs.lib.contract import JobArgs, flag
from jobs.lib.result import run_main
from jobs.lib.session import spark_session
from jobs.lib.storage import open_storage

FORMAT = "dlkit-cifar10-tfrecord-v1"
SPLITS = ("train", "test")


class StagingError(RuntimeError):
    """Bad input or a failed staging, with what to do next; nothing partial is left behind."""


@dataclasses.dataclass(frozen=True)
class StageArgs(JobArgs):
    source: str = flag(f"local folder holding the batch files (or its parent holding {FOLDER}/)")
    target: str = flag("storage URL of the staged dataset")
    shards: int = flag("TFRecord files per split", low=1)
    force: bool = flag("stage again even when up to date", default=False)
    master: str | None = flag("Spark master (default: spark-defaults)", default=None)


def parse_args(argv) -> StageArgs:
    return StageArgs.parse(argv, __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)


# ---- inputs (driver) ----------------------------------------------------------------------
def find_inputs(source: str) -> list[dict]:
    """The six batch files with size and sha256; a clear error for missing or truncated ones."""
    folder = Path(source)
    if (folder / FOLDER).is_dir():
        folder = folder / FOLDER
    missing = [name for name in TRAIN_FILES + TEST_FILES if not (folder / name).is_file()]
    if missing:
        raise StagingError(
            f"{folder}: missing {', '.join(missing)}; fetch the dataset first "
            "('./kit data.fetch', or '--synthetic' where it cannot be downloaded)"
        )
    inputs = []
    for name in TRAIN_FILES + TEST_FILES:
        path = folder / name
        data = path.read_bytes()
        check_length(name, len(data))
        inputs.append({"name": name, "path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return inputs


def fingerprint(inputs: list[dict], shards: int) -> dict:
    return {
        "format": FORMAT,
        "shards": shards,
        "inputs": {i["name"]: {"bytes": i["bytes"], "sha256": i["sha256"]} for i in inputs},
    }


def first_indices(inputs: list[dict]) -> dict[str, tuple[str, int]]:
    """Each file's split and the split-wide index of its first record (files in canonical order)."""
    offsets, next_index = {}, {split: 0 for split in SPLITS}
    for item in inputs:
        split = split_of(item["name"])
        offsets[item["name"]] = (split, next_index[split])
        next_index[split] += check_length(item["name"], item["bytes"])
    return offsets


# ---- executors ----------------------------------------------------------------------------
def explode_file(path_and_data, offsets, shards):
    """(path, bytes) of one batch file -> ((split, shard), (index, label, image bytes)) records."""
    path, data = path_and_data
    name = path.rsplit("/", 1)[-1]
    split, first = offsets[name]
    labels, images = parse_records(name, bytes(data))
    for position in range(len(labels)):
        index = first + position
        yield (split, index % shards), (index, int(labels[position]), images[position].tobytes())


def shard_partition(split_and_shard, shards: int) -> int:
    split, shard = split_and_shard
    return SPLITS.index(split) * shards + shard


def write_shard(partition: int, records, shards: int, staging: str):
    """Writes one shard file, records in index order; yields its manifest entry."""
    from jobs.lib.tfrecord import encode_example, tfrecord_bytes

    split, shard = SPLITS[partition // shards], partition % shards
    ordered = sorted((value for _, value in records), key=lambda record: record[0])
    class_counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    examples = []
    for _, label, image in ordered:
        class_counts[label] += 1
        examples.append(encode_example(np.frombuffer(image, dtype=np.uint8).reshape(32, 32, 3), label))
    data = tfrecord_bytes(examples)
    name = f"part-{shard:05d}.tfrecord"
    storage = open_storage(staging)
    storage.write_bytes(storage.join(staging, split, name), data)
    yield {
        "split": split,
        "file": f"{split}/{name}",
        "records": len(ordered),
        "class_counts": class_counts.tolist(),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "first_index": ordered[0][0] if ordered else None,
    }


# ---- driver -------------------------------------------------------------------------------
def read_manifest(storage, target: str) -> dict | None:
    path = storage.join(target, "manifest.json")
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else None


def staged_already(manifest: dict | None, expected: dict) -> bool:
    """The staged manifest was made from these very inputs (bytes and sha256) and shard count."""
    return bool(manifest) and {key: manifest.get(key) for key in expected} == expected


def build_manifest(stats: list[dict], expected: dict, seconds: float) -> dict:
    splits = {}
    for split in SPLITS:
        shards = sorted((s for s in stats if s["split"] == split), key=lambda s: s["file"])
        counts = np.sum([s["class_counts"] for s in shards], axis=0).tolist()
        splits[split] = {
            "records": sum(s["records"] for s in shards),
            "class_counts": counts,
            "shards": [{k: v for k, v in s.items() if k != "split"} for s in shards],
        }
    digest = hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest()
    return {
        **expected,
        "splits": splits,
        "checksum": digest,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "staging_seconds": round(seconds, 1),
    }


def record_error_in(error: Exception) -> str | None:
    match = re.search(r"RecordError: (.+)", str(error))
    return match.group(1).strip() if match else None


def stage(start_spark, args) -> dict:
    """The staging itself; returns the manifest (existing one when up to date).

    start_spark() is called only when there is something to stage: an up-to-date target costs
    no Spark application (its executors alone take seconds to start)."""
    from jobs.lib.progress import spark_progress

    if args.shards < 1:
        raise StagingError("--shards must be at least 1")
    storage = open_storage(args.target)
    finish_interrupted_swap(storage, args.target)
    inputs = find_inputs(args.source)
    expected = fingerprint(inputs, args.shards)
    existing = read_manifest(storage, args.target)
    if not args.force and staged_already(existing, expected):
        return {**existing, "up_to_date": True}

    started = time.monotonic()
    staging = f"{args.target.rstrip('/')}.staging-{uuid.uuid4().hex[:8]}"
    try:
        spark = start_spark()  # its executors register while the files upload
        upload_raw_files(storage, inputs, staging)
        offsets, shards = first_indices(inputs), args.shards
        raw_files = ",".join(storage.join(staging, "raw", item["name"]) for item in inputs)
        with spark_progress(spark.sparkContext, "stage: parse and write shards"):
            stats = (
                spark.sparkContext.binaryFiles(raw_files, minPartitions=len(inputs))
                .flatMap(lambda item: explode_file(item, offsets, shards))
                .partitionBy(len(SPLITS) * shards, lambda key: shard_partition(key, shards))
                .mapPartitionsWithIndex(lambda index, records: write_shard(index, records, shards, staging))
                .collect()
            )
        manifest = build_manifest(stats, expected, time.monotonic() - started)
        storage.write_bytes(storage.join(staging, "manifest.json"), json.dumps(manifest, indent=2).encode())
        swap_into_place(storage, staging, args.target)
    except BaseException as error:  # Ctrl-C and `docker stop` too: nothing half-written stays
        storage.delete(staging)
        detail = record_error_in(error) if isinstance(error, Exception) else None
        if detail:
            raise StagingError(f"bad input, nothing was staged: {detail}") from None
        raise
    return {**manifest, "up_to_date": False}


def upload_raw_files(storage, inputs: list[dict], staging: str) -> None:
    """Copies the inputs into the staging folder, one live line per file with the running total."""
    total, done, started = sum(item["bytes"] for item in inputs), 0, time.monotonic()
    for number, item in enumerate(inputs, 1):
        print(
            f"stage: uploading {item['name']} ({item['bytes'] / 1e6:.1f} MB), file {number}/{len(inputs)}, "
            f"{done / 1e6:.0f}/{total / 1e6:.0f} MB [{time.monotonic() - started:.0f}s]",
            file=sys.stderr,
            flush=True,
        )
        storage.write_bytes(storage.join(staging, "raw", item["name"]), Path(item["path"]).read_bytes())
        done += item["bytes"]
    seconds = time.monotonic() - started
    print(
        f"stage: uploaded {len(inputs)} files, {total / 1e6:.0f} MB in {seconds:.1f}s "
        f"({total / 1e6 / max(seconds, 1e-3):.0f} MB/s)",
        file=sys.stderr,
        flush=True,
    )


def swap_into_place(storage, staging: str, target: str) -> None:
    """Readers see the old complete folder or the new complete one, never a mix."""
    retired = f"{target.rstrip('/')}.retired-{uuid.uuid4().hex[:8]}"
    had_old = storage.exists(target)
    if had_old:
        storage.rename(target, retired)
    storage.rename(staging, target)
    if had_old:
        storage.delete(retired)


def finish_interrupted_swap(storage, target: str) -> None:
    """A staging killed between the swap's two renames left the target absent: finish or undo it.

    A complete staging (its manifest is written last) goes into place; otherwise the retired
    copy comes back. Retired copies beside a target in place are only leftovers."""
    parent, name = target.rstrip("/").rsplit("/", 1)
    if not storage.exists(parent):
        return
    beside = {entry.path.rstrip("/").rsplit("/", 1)[-1]: entry.path for entry in storage.listdir(parent)}
    retired = sorted(path for base, path in beside.items() if base.startswith(f"{name}.retired-"))
    if not storage.exists(target):
        complete = [
            path
            for base, path in beside.items()
            if base.startswith(f"{name}.staging-") and storage.exists(storage.join(path, "manifest.json"))
        ]
        if complete:
            print(f"stage: finishing an interrupted swap: {complete[0]} goes into place", file=sys.stderr, flush=True)
            storage.rename(complete[0], target)
        elif retired:
            print(f"stage: undoing an interrupted swap: {retired[-1]} comes back", file=sys.stderr, flush=True)
            storage.rename(retired.pop(), target)
    for path in retired:
        storage.delete(path)


def summary(manifest: dict) -> dict:
    return {
        "up_to_date": manifest["up_to_date"],
        "checksum": manifest["checksum"],
        "shards": manifest["shards"],
        "staging_seconds": manifest["staging_seconds"],
        **{f"{split}_records": manifest["splits"][split]["records"] for split in SPLITS},
        **{f"{split}_class_counts": manifest["splits"][split]["class_counts"] for split in SPLITS},
        "shard_bytes": [s["bytes"] for s in manifest["splits"]["train"]["shards"]],
    }


def run(args) -> dict:
    started = []

    def start_spark():
        started.append(spark_session("stage-cifar10", args.master))
        return started[-1]

    try:
        return summary(stage(start_spark, args))
    finally:
        for spark in started:
            spark.stop()


def main(argv=None) -> dict:
    return run_main("stage", run, parse_args(argv), (StagingError, RecordError))


if __name__ == "__main__":
    main()
