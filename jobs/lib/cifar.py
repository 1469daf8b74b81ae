"""The CIFAR-10 binary format: 3073-byte records, 1 label byte then 1024 R, 1024 G, 1024 B."""

from __future__ import annotations

import numpy as np

IMAGE_SIZE = 32
IMAGE_BYTES = 3 * IMAGE_SIZE * IMAGE_SIZE
RECORD_BYTES = 1 + IMAGE_BYTES
NUM_CLASSES = 10
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{index}.bin" for index in range(1, 6))
TEST_FILES = ("test_batch.bin",)
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class RecordError(ValueError):
    """A batch file that is not valid CIFAR-10 binary data; says which file and byte offset."""


def split_of(file_name: str) -> str:
    if file_name in TRAIN_FILES:
        return "train"
    if file_name in TEST_FILES:
        return "test"
    raise RecordError(f"{file_name}: not a CIFAR-10 batch file (expected {', '.join(TRAIN_FILES + TEST_FILES)})")


def check_length(name: str, length: int) -> int:
    """The number of records in a file of this length, or a RecordError naming the bad offset."""
    if length == 0:
        raise RecordError(f"{name}: empty file, expected {RECORD_BYTES}-byte records")
    if length % RECORD_BYTES:
        offset = length - length % RECORD_BYTES
        raise RecordError(
            f"{name}: {length} bytes is not a multiple of {RECORD_BYTES}: the record at byte "
            f"offset {offset} is truncated ({length - offset} of {RECORD_BYTES} bytes)"
        )
    return length // RECORD_BYTES


def parse_records(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n,) and images (n, 32, 32, 3) as uint8, height x width x channel."""
    count = check_length(name, len(data))
    records = np.frombuffer(data, dtype=np.uint8).reshape(count, RECORD_BYTES)
    labels = records[:, 0]
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        index = int(bad[0])
        raise RecordError(
            f"{name}: record {index} at byte offset {index * RECORD_BYTES} has label "
            f"{int(labels[index])}, outside 0-{NUM_CLASSES - 1}"
        )
    images = records[:, 1:].reshape(count, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return labels.copy(), np.ascontiguousarray(images)


def encode_records(labels: np.ndarray, images: np.ndarray) -> bytes:
    """The inverse of parse_records: labels (n,) and images (n, 32, 32, 3) to batch-file bytes."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(labels), IMAGE_BYTES)
    return np.concatenate([labels.reshape(-1, 1).astype(np.uint8), planes.astype(np.uint8)], axis=1).tobytes()
