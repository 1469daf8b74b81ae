import numpy as np

from jobs.eda_cifar import merge, report, shard_statistics
from jobs.lib.tfrecord import encode_example, tfrecord_bytes


def write_shard(folder, name, labels, value):
    images = [np.full((32, 32, 3), value, np.uint8) for _ in labels]
    (folder / name).write_bytes(tfrecord_bytes(encode_example(image, label) for image, label in zip(images, labels)))


def test_statistics_from_shards_are_exact_and_merge_adds_them(tmp_path):
    (tmp_path / "train").mkdir()
    write_shard(tmp_path / "train", "part-00000.tfrecord", [0, 1, 1], value=10)
    write_shard(tmp_path / "train", "part-00001.tfrecord", [9], value=250)
    shards = [("train", 0, "train/part-00000.tfrecord"), ("train", 1, "train/part-00001.tfrecord")]
    first = next(shard_statistics(shards[:1], str(tmp_path), 1.0, 0, 2))
    second = next(shard_statistics(shards[1:], str(tmp_path), 1.0, 0, 2))
    result = report(merge(first, second, per_class=2), fraction=1.0, seconds=0)
    train = result["splits"]["train"]
    assert list(train["label_counts"].values()) == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert train["mean_pixel_value"] == (3 * 10 + 250) / 4
    assert train["mean_contrast"] == 0 and train["mean_pixel_range"] == 0
    assert sum(train["histograms"]["brightness"]["counts"]) == 4


def test_a_fraction_samples_records_inside_the_shard_reader(tmp_path):
    (tmp_path / "train").mkdir()
    write_shard(tmp_path / "train", "part-00000.tfrecord", [i % 10 for i in range(400)], value=100)
    partial = next(shard_statistics([("train", 0, "train/part-00000.tfrecord")], str(tmp_path), 0.25, 0, 1))
    assert 60 < partial["splits"]["train"]["records"] < 140
