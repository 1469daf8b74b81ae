import numpy as np

from jobs.lib import input_pipeline
from jobs.lib.cnn import build_model
from jobs.lib.tfrecord import encode_example, tfrecord_bytes


def test_the_reference_cnn_has_the_studys_parameter_count_and_ten_probabilities():
    model = build_model()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 591_658
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert out.shape == (2, 10)
    assert np.allclose(out.numpy().sum(axis=1), 1.0, atol=1e-5)


def test_the_pipeline_scales_pixels_keeps_labels_and_tallies_what_it_read(tmp_path):
    (tmp_path / "train").mkdir()
    images = np.arange(5 * 32 * 32 * 3, dtype=np.int64).reshape(5, 32, 32, 3) % 256
    data = tfrecord_bytes(encode_example(i.astype(np.uint8), label) for i, label in zip(images, [3, 1, 4, 1, 5]))
    (tmp_path / "train" / "part-00000.tfrecord").write_bytes(data)
    input_pipeline.READS.clear()
    dataset = input_pipeline.make_dataset(str(tmp_path), ["train/part-00000.tfrecord"], batch_size=5, training=False)
    batch_images, batch_labels = next(iter(dataset))
    assert batch_images.shape == (5, 32, 32, 3) and batch_images.dtype.name == "float32"
    assert np.allclose(batch_images.numpy(), images / 255.0)
    assert batch_labels.numpy().tolist() == [3, 1, 4, 1, 5]
    assert input_pipeline.READS == {"train/part-00000.tfrecord": 5}
    assert input_pipeline.FETCHES["train/part-00000.tfrecord"] == 1


def test_a_short_epoch_reads_and_caches_only_its_records_and_repeats_them(tmp_path):
    (tmp_path / "train").mkdir()
    images = np.zeros((10, 32, 32, 3), np.uint8)
    data = tfrecord_bytes(encode_example(image, label) for image, label in zip(images, range(10)))
    (tmp_path / "train" / "part-00000.tfrecord").write_bytes(data)
    dataset = input_pipeline.make_dataset(str(tmp_path), ["train/part-00000.tfrecord"], batch_size=2, training=True, records=4)
    seen = [int(label) for _, labels in dataset.take(6) for label in labels.numpy()]  # three epochs of 2 steps
    assert sorted(set(seen)) == [0, 1, 2, 3] and len(seen) == 12  # the same 4 records, from the cache


def test_training_and_testing_run_the_layers_without_autograph_rewriting_them():
    import tensorflow as tf
    from tensorflow.python.autograph.core import ag_ctx

    model = build_model()
    seen = []
    first_layer_call = model.layers[0].call

    def recording_call(*args, **kwargs):
        seen.append(ag_ctx.control_status_ctx().status)
        return first_layer_call(*args, **kwargs)

    model.layers[0].call = recording_call
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 32, 32, 3), np.float32), np.arange(4))).batch(2)
    model.fit(data, epochs=1, verbose=0)
    model.evaluate(data, verbose=0)
    assert seen and all(status == ag_ctx.Status.DISABLED for status in seen)


def test_the_per_device_datasets_of_a_distributed_pipeline_do_not_autotune(monkeypatch):
    import tensorflow as tf
    from tensorflow.python.data.ops import multi_device_iterator_ops

    monkeypatch.setattr(
        multi_device_iterator_ops, "_create_device_dataset", lambda *args, **kwargs: tf.data.Dataset.range(3).prefetch(1)
    )
    input_pipeline.without_device_autotune()
    input_pipeline.without_device_autotune()  # a second call wraps nothing again
    device_dataset = multi_device_iterator_ops._create_device_dataset(None, 0, 1, False)
    assert device_dataset.options().autotune.enabled is False
    assert list(device_dataset.as_numpy_iterator()) == [0, 1, 2]


def shard_files(folder, count: int = 6, records: int = 8) -> list[str]:
    """count TFRecord shards of `records` records each; shard i holds labels 8i.. and pixels 40i."""
    (folder / "train").mkdir()
    files = []
    for index in range(count):
        images = np.full((records, 32, 32, 3), index * 40, np.uint8)
        name = f"train/part-{index:05d}.tfrecord"
        (folder / name).write_bytes(tfrecord_bytes(encode_example(i, index * 8 + k) for k, i in enumerate(images)))
        files.append(name)
    return files


def test_a_seed_fixes_the_training_batches_whichever_fetch_is_slow(tmp_path):
    import time

    files = shard_files(tmp_path)

    def batches(slow: str, seed: int = 7) -> list:
        fetch = input_pipeline.make_fetch(str(tmp_path), str(tmp_path / f"cache-{slow.split('/')[-1]}-{seed}"))

        def fetch_late(path):  # one file arrives last, as a slow datanode would make it
            if path.numpy().decode() == slow:
                time.sleep(0.3)
            return fetch(path)

        dataset = input_pipeline.make_dataset(str(tmp_path), files, batch_size=4, training=True, seed=seed, fetch=fetch_late)
        return [(images.numpy(), labels.numpy()) for images, labels in dataset.take(30)]  # 2.5 passes

    def same(a: list, b: list) -> bool:
        return all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))

    assert same(batches(files[0]), batches(files[3]))
    assert not same(batches(files[0]), batches(files[0], seed=8))


def test_every_training_pipeline_can_be_sharded_by_file_over_two_workers(tmp_path):
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    files = shard_files(tmp_path, count=4)
    for augmentation in (False, True):  # what MultiWorkerMirroredStrategy does to each worker's dataset
        dataset = input_pipeline.make_dataset(str(tmp_path), files, batch_size=4, training=True, augmentation=augmentation)
        worker_1 = _AutoShardDataset(dataset, num_workers=2, index=1)
        labels = {int(label) for _, batch in worker_1.take(8) for label in batch.numpy()}
        assert labels == set(range(8, 16)) | set(range(24, 32))  # files 1 and 3: every other file, read whole
