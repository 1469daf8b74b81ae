import numpy as np

from jobs.lib.tfrecord import decode_example, encode_example, read_tfrecord_bytes, tfrecord_bytes


def test_examples_round_trip_through_a_tfrecord_file():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    data = tfrecord_bytes(encode_example(image, label) for image, label in zip(images, [0, 9, 4]))
    decoded = [decode_example(record) for record in read_tfrecord_bytes(data)]
    assert [label for _, label in decoded] == [0, 9, 4]
    assert all(np.array_equal(image, original) for (image, _), original in zip(decoded, images))
