import numpy as np
import pytest

from jobs.lib.cifar import FOLDER, RECORD_BYTES, TEST_FILES, TRAIN_FILES, RecordError, encode_records, parse_records
from jobs.synthetic_cifar import write_dataset


def record(label: int, fill: int) -> bytes:
    red, green, blue = bytes([fill]) * 1024, bytes([fill + 1]) * 1024, bytes([fill + 2]) * 1024
    return bytes([label]) + red + green + blue


def test_records_parse_into_labels_and_height_width_channel_images():
    labels, images = parse_records("x.bin", record(3, 10) + record(9, 20))
    assert labels.tolist() == [3, 9]
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert images[0, 5, 7].tolist() == [10, 11, 12] and images[1, 31, 31].tolist() == [20, 21, 22]


def test_encode_is_the_inverse_of_parse():
    data = record(1, 5) + record(7, 100)
    assert encode_records(*parse_records("x.bin", data)) == data


def test_a_truncated_file_names_the_file_and_the_offset_of_the_broken_record():
    with pytest.raises(RecordError, match=rf"data_batch_2.bin: {2 * RECORD_BYTES + 100} bytes .* offset {2 * RECORD_BYTES}"):
        parse_records("data_batch_2.bin", record(1, 1) * 2 + b"\0" * 100)


def test_a_label_outside_0_to_9_names_the_record_and_its_offset():
    with pytest.raises(RecordError, match=rf"record 1 at byte offset {RECORD_BYTES} has label 10"):
        parse_records("test_batch.bin", record(1, 1) + record(10, 1))


def test_the_synthetic_dataset_has_the_official_layout_and_balanced_classes(tmp_path):
    counts = write_dataset(tmp_path, train_per_batch=200, test_records=100, seed=3)
    folder = tmp_path / FOLDER
    assert counts == {**{name: 200 for name in TRAIN_FILES}, TEST_FILES[0]: 100}
    for name in TRAIN_FILES + TEST_FILES:
        labels, images = parse_records(name, (folder / name).read_bytes())
        assert np.bincount(labels, minlength=10).tolist() == [len(labels) // 10] * 10
        assert images.std() > 20  # patterns and noise, not flat colour
    assert (folder / "batches.meta.txt").read_text().split()[0] == "airplane"


def test_the_synthetic_dataset_is_deterministic_per_seed(tmp_path):
    write_dataset(tmp_path / "a", 50, 20, seed=1)
    write_dataset(tmp_path / "b", 50, 20, seed=1)
    write_dataset(tmp_path / "c", 50, 20, seed=2)
    read = lambda root: (root / FOLDER / "test_batch.bin").read_bytes()  # noqa: E731
    assert read(tmp_path / "a") == read(tmp_path / "b") != read(tmp_path / "c")


def test_the_synthetic_classes_are_learnable_but_not_trivially():
    """A nearest-class-mean classifier on raw pixels, fitted on one sample and scored on a fresh
    one, beats chance (10%) by far, yet leaves room for a CNN to learn shapes."""
    from jobs.synthetic_cifar import make_images

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 100).astype(np.uint8)
    fit, score = (make_images(labels, rng).reshape(len(labels), -1).astype(np.float32) for _ in range(2))
    means = np.stack([fit[labels == k].mean(axis=0) for k in range(10)])
    predicted = np.argmin(((score[:, None] - means[None]) ** 2).sum(axis=-1), axis=1)
    assert 0.3 < (predicted == labels).mean() < 0.8


def test_the_hard_stand_in_keeps_the_format_and_is_harder_for_a_nearest_mean_classifier():
    from jobs.synthetic_cifar import make_images

    labels = np.repeat(np.arange(10), 100).astype(np.uint8)

    def nearest_mean_accuracy(difficulty):
        rng = np.random.default_rng(0)
        fit, score = (make_images(labels, rng, difficulty).reshape(len(labels), -1).astype(np.float32) for _ in range(2))
        means = np.stack([fit[labels == k].mean(axis=0) for k in range(10)])
        return (np.argmin(((score[:, None] - means[None]) ** 2).sum(axis=-1), axis=1) == labels).mean()

    hard = make_images(labels[:20], np.random.default_rng(0), "hard")
    assert hard.shape == (20, 32, 32, 3) and hard.dtype == np.uint8
    assert nearest_mean_accuracy("hard") < nearest_mean_accuracy("easy")
    with pytest.raises(ValueError, match="difficulty 'extreme'"):
        make_images(labels[:2], np.random.default_rng(0), "extreme")


def test_the_hard_stand_in_records_a_fifth_of_its_labels_as_another_class():
    from jobs.synthetic_cifar import HARD, recorded_labels

    labels = np.repeat(np.arange(10), 1000).astype(np.uint8)
    noisy = recorded_labels(labels, np.random.default_rng(0), "hard")
    assert abs((noisy != labels).mean() - HARD["label_noise"]) < 0.02 and noisy.dtype == np.uint8
    assert recorded_labels(labels, np.random.default_rng(0), "easy") is labels
