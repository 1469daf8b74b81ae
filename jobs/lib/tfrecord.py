"""CIFAR records as tf.train.Example: raw uint8 image bytes (32x32x3, HWC) and an int64 label."""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, Iterator

import numpy as np

from jobs.lib.cifar import IMAGE_BYTES, IMAGE_SIZE


def encode_example(image: np.ndarray, label: int) -> bytes:
    import tensorflow as tf

    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.ascontiguousarray(image).tobytes()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def decode_example(serialized: bytes) -> tuple[np.ndarray, int]:
    import tensorflow as tf

    features = tf.train.Example.FromString(serialized).features.feature
    raw = features["image"].bytes_list.value[0]
    if len(raw) != IMAGE_BYTES:
        raise ValueError(f"an Example's image has {len(raw)} bytes, expected {IMAGE_BYTES}")
    image = np.frombuffer(raw, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 3)
    return image, int(features["label"].int64_list.value[0])


def tfrecord_bytes(serialized_examples: Iterable[bytes]) -> bytes:
    """A whole TFRecord file (with its CRCs) in memory, written by TensorFlow's own writer."""
    import tensorflow as tf

    fd, path = tempfile.mkstemp(suffix=".tfrecord")
    os.close(fd)
    try:
        with tf.io.TFRecordWriter(path) as writer:
            for example in serialized_examples:
                writer.write(example)
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        os.unlink(path)


def read_tfrecord_bytes(data: bytes) -> Iterator[bytes]:
    """The serialized Examples of a TFRecord file held in memory (CRCs checked by TensorFlow)."""
    import tensorflow as tf

    fd, path = tempfile.mkstemp(suffix=".tfrecord")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield record
    finally:
        os.unlink(path)
