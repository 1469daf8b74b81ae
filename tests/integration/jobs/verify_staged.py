"""Decode every staged record and compare it with its source record (shard k holds k, k+S, ...)."""

import json
import sys

import numpy as np

from jobs.lib.cifar import TEST_FILES, TRAIN_FILES, parse_records
from jobs.lib.result import emit
from jobs.lib.storage import open_storage
from jobs.lib.tfrecord import decode_example, read_tfrecord_bytes

data_root, source = sys.argv[1], sys.argv[2]
storage = open_storage(data_root)
manifest = json.loads(storage.read_bytes(storage.join(data_root, "manifest.json")))
report = {"checked": 0, "mismatches": [], "shapes": set()}
for split, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
    parsed = [parse_records(name, open(f"{source}/{name}", "rb").read()) for name in files]
    labels = np.concatenate([p[0] for p in parsed])
    images = np.concatenate([p[1] for p in parsed])
    shards = manifest["splits"][split]["shards"]
    for shard_index, shard in enumerate(shards):
        records = list(read_tfrecord_bytes(storage.read_bytes(storage.join(data_root, shard["file"]))))
        assert len(records) == shard["records"], (shard, len(records))
        for position, record in enumerate(records):
            index = shard_index + position * len(shards)
            image, label = decode_example(record)
            report["shapes"].add(image.shape)
            report["checked"] += 1
            if label != labels[index] or not np.array_equal(image, images[index]):
                report["mismatches"].append([split, shard["file"], position])
report["shapes"] = sorted(report["shapes"])
emit(report)
