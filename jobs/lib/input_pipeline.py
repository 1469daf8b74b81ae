"""tf.data input from TFRecord shards in HDFS (or a local folder), sharded by FILE per worker.

The fetch of a shard's bytes sits inside the interleave function, after the file list: with
AutoShardPolicy.FILE each worker then fetches and reads only its own files. (A map(fetch) in
front of the interleave would make every worker fetch every file.) The fetch and every batch
are tallied, so a run can show which files each worker read and how many records.
Records are tallied as they are read from the file, before the in-memory cache.

A seed fixes everything a run reads and in what order (file order, interleave, shuffle), whatever
the fetches' timing: two runs of one configuration and seed see the same batches, so what differs
between two runs is what they were given, not chance. The tuned recipe's random flips and crops
are the exception (see make_dataset).
"""

from __future__ import annotations

import collections
import os
import tempfile
import uuid

from jobs.lib.storage import open_storage

READS = collections.Counter()  # records read per shard file, in this process
FETCHES = collections.Counter()  # times each shard file was opened, in this process
READ_CHUNK = 256


def make_fetch(root: str, cache_dir: str | None = None):
    """A py_function body: shard path -> local file path, fetched once and cached."""
    storage = open_storage(root)
    cache = cache_dir or tempfile.mkdtemp(prefix="dlkit-shards-")
    os.makedirs(cache, exist_ok=True)

    def fetch(path) -> bytes:
        name = path.numpy().decode()
        FETCHES[name] += 1
        local = os.path.join(cache, name.replace("/", "_"))
        if not os.path.exists(local):
            partial = f"{local}.{uuid.uuid4().hex}.part"  # parallel interleave calls may race
            with open(partial, "wb") as handle:
                handle.write(storage.read_bytes(storage.join(root, name)))
            os.replace(partial, local)
        return local.encode()

    return fetch


def _tally(name, count):
    READS[name.numpy().decode()] += int(count)
    return 0


def parse(serialized):
    """A batch of serialized records -> uint8 images and int32 labels (vectorised, before the cache)."""
    import tensorflow as tf

    features = tf.io.parse_example(
        serialized, {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    )
    images = tf.reshape(tf.io.decode_raw(features["image"], tf.uint8), (-1, 32, 32, 3))
    return images, tf.cast(features["label"], tf.int32)


def scale(images, labels):
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 255.0, labels


def augment(image, label):
    import tensorflow as tf

    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_crop(tf.image.resize_with_crop_or_pad(image, 36, 36), (32, 32, 3))
    return image, label


def without_device_autotune() -> None:
    """The per-device datasets tf.distribute builds under MultiWorkerMirroredStrategy get
    autotuning back (they are new datasets with default options), and with it the teardown
    wait; this gives them the options of make_dataset. Idempotent; TensorFlow 2.16's
    multi_device_iterator_ops, pinned with it."""
    import tensorflow as tf
    from tensorflow.python.data.ops import multi_device_iterator_ops

    create = multi_device_iterator_ops._create_device_dataset
    if getattr(create, "without_autotune", False):
        return

    def create_without_autotune(*args, **kwargs):
        options = tf.data.Options()
        options.autotune.enabled = False
        return create(*args, **kwargs).with_options(options)

    create_without_autotune.without_autotune = True
    multi_device_iterator_ops._create_device_dataset = create_without_autotune


def make_dataset(
    root: str,
    files: list[str],
    batch_size: int,
    training: bool,
    seed: int = 0,
    augmentation: bool = False,
    fetch=None,
    cache: bool = True,
    records: int | None = None,
):
    """Batches of (image in [0, 1], label); training data is shuffled and repeats forever.

    Each worker reads its own files once: the decoded uint8 records are cached in memory (a
    worker's half of CIFAR-10 is 77 MB), so later epochs spend the core on the model.
    records: the first records of this worker's files only, for epochs shorter than a pass: a
    cache that is not read to its end is discarded, so short epochs would never reach it.
    """
    import tensorflow as tf

    fetch = fetch or make_fetch(root)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    def read_file(name):
        local = tf.py_function(fetch, [name], tf.string)
        local.set_shape(())

        def tally(records):  # one call per READ_CHUNK records, not per record
            done = tf.py_function(_tally, [name, tf.size(records)], tf.int64)
            with tf.control_dependencies([done]):
                return parse(records)

        return tf.data.TFRecordDataset(local).batch(READ_CHUNK).map(tally).unbatch()

    # deterministic: the files are still fetched and read in parallel, their records taken in turn
    dataset = dataset.interleave(
        read_file, cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if records:
        dataset = dataset.take(records)
    if cache:
        dataset = dataset.cache()
    if training:
        # Not seeded per record: stateless draws need a second dataset of seeds beside this one,
        # and auto-sharding (FILE) then finds no single source to shard and fails with 2 workers.
        if augmentation:
            dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.shuffle(4096, seed=seed).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=training).map(scale).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
    # Autotuning's optimisation thread makes every iterator's teardown wait for its next round,
    # up to 10 s: after each validation, each evaluate and each fit. With the records cached,
    # AUTOTUNE as the core count gives the same step time.
    options.autotune.enabled = False
    without_device_autotune()
    return dataset.with_options(options)
