"""A synthetic CIFAR-10 in the very same binary format and layout, for machines without the data.

Each class has its own visual pattern (a colour pair and a stripe orientation and frequency),
drawn with random phase, position, contrast and heavy noise. Two difficulties: easy (a CNN passes
90% within an epoch: quick checks) and hard (CIFAR-like: many epochs, well below 100%, so an
accuracy lost to distribution shows). Deterministic for a given seed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from jobs.lib.cifar import FOLDER, IMAGE_SIZE, LABEL_NAMES, NUM_CLASSES, TEST_FILES, TRAIN_FILES, encode_records
from jobs.lib.result import JobArguments

# Per class: two RGB colours and a stripe angle (degrees) and frequency (cycles per image).
COLOURS = np.array(
    [
        [[60, 110, 200], [200, 220, 240]],
        [[190, 40, 40], [60, 60, 70]],
        [[90, 150, 60], [210, 200, 120]],
        [[150, 110, 80], [230, 210, 180]],
        [[110, 130, 50], [170, 120, 70]],
        [[200, 160, 110], [80, 60, 40]],
        [[40, 120, 40], [150, 200, 90]],
        [[130, 70, 30], [220, 180, 140]],
        [[20, 60, 140], [190, 190, 200]],
        [[220, 200, 40], [40, 40, 50]],
    ],
    dtype=np.float32,
)
ANGLES = np.deg2rad(np.arange(NUM_CLASSES) * 18.0)
FREQUENCIES = np.array([2.0, 3.0, 4.0, 2.5, 3.5, 2.0, 3.0, 4.0, 2.5, 3.5])


DIFFICULTIES = ("easy", "hard")
# hard: the class's stripes in one patch, a weaker patch of another class's beside it, and a share of
# the labels (train and test alike) replaced by another class: no model passes 1 - label_noise
HARD = {
    "noise": 40.0,
    "colour_jitter": 50.0,
    "own": 0.75,
    "distractor": 0.5,
    "width": 0.1,
    "jitter": 0.15,
    "label_noise": 0.2,
}


def stripes(labels: np.ndarray, rng: np.random.Generator, angle_jitter: float) -> np.ndarray:
    """Each label's stripe pattern, -1..1, at a random phase and a jittered angle."""
    count = len(labels)
    grid = np.linspace(0.0, 1.0, IMAGE_SIZE, dtype=np.float32)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    angle = ANGLES[labels][:, None, None] + rng.normal(0, angle_jitter, (count, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (count, 1, 1))
    return np.sin(2 * np.pi * FREQUENCIES[labels][:, None, None] * (x * np.cos(angle) + y * np.sin(angle)) + phase)


def blobs(count: int, rng: np.random.Generator, width: float) -> np.ndarray:
    """A soft blob at a random place per image: objects are not always centred."""
    grid = np.linspace(0.0, 1.0, IMAGE_SIZE, dtype=np.float32)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    cy, cx = rng.uniform(0.2, 0.8, (2, count, 1, 1))
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / width)


def make_images(labels: np.ndarray, rng: np.random.Generator, difficulty: str = "easy") -> np.ndarray:
    """uint8 images (n, 32, 32, 3) with each label's pattern.

    easy: the pattern fills the image; a CNN passes 90% in an epoch.
    hard: the pattern shows in a patch, beside a weaker patch of another class's pattern, under more
    noise and colour jitter; with recorded_labels' label noise the reference CNN learns over many
    epochs and stays well below 100%, as on CIFAR-10."""
    count = len(labels)
    if difficulty == "easy":
        noise, colour_jitter = 40.0, 45.0
        mix = (0.5 + 0.5 * stripes(labels, rng, 0.15)) * (0.4 + 0.6 * blobs(count, rng, 0.08))
    elif difficulty == "hard":
        noise, colour_jitter = HARD["noise"], HARD["colour_jitter"]
        others = (labels + rng.integers(1, NUM_CLASSES, count)) % NUM_CLASSES
        own = (
            rng.uniform(HARD["own"], 1.0, (count, 1, 1))
            * blobs(count, rng, HARD["width"])
            * stripes(labels, rng, HARD["jitter"])
        )
        distractor = (
            rng.uniform(0.0, HARD["distractor"], (count, 1, 1))
            * blobs(count, rng, HARD["width"])
            * stripes(others, rng, HARD["jitter"])
        )
        mix = np.clip(0.5 + 0.5 * (own + distractor), 0.0, 1.0)
    else:
        raise ValueError(f"difficulty {difficulty!r}: use one of {', '.join(DIFFICULTIES)}")
    # Colours vary from image to image, so colour alone is a weak cue and shape has to be learnt.
    first = COLOURS[labels, 0] + rng.normal(0, colour_jitter, (count, 3))
    second = COLOURS[labels, 1] + rng.normal(0, colour_jitter, (count, 3))
    images = first[:, None, None, :] * (1 - mix[..., None]) + second[:, None, None, :] * mix[..., None]
    images *= rng.uniform(0.7, 1.3, (count, 1, 1, 1))  # lighting
    images += rng.normal(0, noise, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8)


def recorded_labels(labels: np.ndarray, rng: np.random.Generator, difficulty: str) -> np.ndarray:
    """The labels written beside the images: for hard, a share of them replaced by another class."""
    if difficulty != "hard":
        return labels
    flipped = rng.random(len(labels)) < HARD["label_noise"]
    others = (labels + rng.integers(1, NUM_CLASSES, len(labels))) % NUM_CLASSES
    return np.where(flipped, others, labels).astype(labels.dtype)


def balanced_labels(count: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.arange(count) % NUM_CLASSES
    rng.shuffle(labels)
    return labels.astype(np.uint8)


def write_dataset(
    out_dir: Path,
    train_per_batch: int = 10000,
    test_records: int = 10000,
    seed: int = 0,
    chunk: int = 2000,
    difficulty: str = "easy",
) -> dict[str, int]:
    """Writes <out_dir>/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin and batches.meta.txt."""
    folder = Path(out_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {}
    for name, count in [(n, train_per_batch) for n in TRAIN_FILES] + [(TEST_FILES[0], test_records)]:
        labels = balanced_labels(count, rng)
        partial = folder / f".{name}.part"
        with open(partial, "wb") as handle:
            for start in range(0, count, chunk):
                part = labels[start : start + chunk]
                images = make_images(part, rng, difficulty)
                handle.write(encode_records(recorded_labels(part, rng, difficulty), images))
        os.replace(partial, folder / name)
        counts[name] = count
    (folder / "batches.meta.txt").write_text("\n".join(LABEL_NAMES) + "\n")
    return counts


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = JobArguments(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train-per-batch", type=int, default=10000)
    parser.add_argument("--test-records", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", choices=DIFFICULTIES, default="easy")
    args = parser.parse_args(argv)
    counts = write_dataset(args.out_dir, args.train_per_batch, args.test_records, args.seed, difficulty=args.difficulty)
    print(f"wrote {sum(counts.values())} records to {args.out_dir / FOLDER}", file=sys.stderr)
    return counts


if __name__ == "__main__":
    main()
