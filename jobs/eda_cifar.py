"""Exploratory analysis of a staged CIFAR-10, computed in the executors.

Each executor reads its TFRecord shards and reduces them to fixed-bin histograms, counts and
a few sample images; only those small aggregates reach the driver, which writes eda.json and
the figures (label bars, brightness and contrast histograms, pixel-range histogram with its
mean, a grid of samples). --fraction samples records inside the executors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from jobs.lib.cifar import LABEL_NAMES, NUM_CLASSES
from jobs.lib.contract import JobArgs, flag
from jobs.lib.result import run_main
from jobs.lib.session import spark_session
from jobs.lib.storage import open_storage

BINS = 64
EDGES = {"brightness": (0.0, 256.0), "contrast": (0.0, 128.0), "pixel_range": (0.0, 256.0)}
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class EdaArgs(JobArgs):
    data: str = flag("storage URL of the staged dataset (holds manifest.json)")
    out: str = flag("local folder for eda.json and the figures")
    fraction: float = flag("share of records analysed, sampled in the executors: above 0, at most 1")
    seed: int = flag(default=0)
    samples_per_class: int = flag("sample images per class in the grid figure", default=8, low=1)
    master: str | None = flag("Spark master (default: spark-defaults)", default=None)


def parse_args(argv) -> EdaArgs:
    args = EdaArgs.parse(argv, __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if not 0 < args.fraction <= 1:
        EdaArgs.parser().error(f"argument --fraction: {args.fraction} must be above 0 and at most 1")
    return args


# ---- executors ----------------------------------------------------------------------------
def empty_split() -> dict:
    return {
        "records": 0,
        "labels": np.zeros(NUM_CLASSES, np.int64),
        "pixel_sum": 0.0,
        "sums": {name: 0.0 for name in EDGES},
        "histograms": {name: np.zeros(BINS, np.int64) for name in EDGES},
    }


def image_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: mean (brightness), standard deviation (contrast), max - min (pixel range)."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    return {"brightness": flat.mean(axis=1), "contrast": flat.std(axis=1), "pixel_range": flat.max(axis=1) - flat.min(axis=1)}


def shard_statistics(shards, data_root: str, fraction: float, seed: int, samples_per_class: int):
    """Reduce (split, shard index, file) entries to one partial result."""
    from jobs.lib.tfrecord import decode_example, read_tfrecord_bytes

    storage = open_storage(data_root)
    partial = {"splits": {split: empty_split() for split in SPLITS}, "samples": {}}
    for split, shard_index, file in shards:
        records = list(read_tfrecord_bytes(storage.read_bytes(storage.join(data_root, file))))
        rng = np.random.default_rng([seed, SPLITS.index(split), shard_index])
        if fraction < 1:  # sample before decoding: a small fraction is fast, not just small
            records = [r for r, kept in zip(records, rng.random(len(records)) < fraction) if kept]
        if not records:
            continue
        decoded = [decode_example(record) for record in records]
        images = np.stack([image for image, _ in decoded])
        labels = np.array([label for _, label in decoded], np.int64)
        entry = partial["splits"][split]
        entry["records"] += len(labels)
        entry["labels"] += np.bincount(labels, minlength=NUM_CLASSES)
        entry["pixel_sum"] += float(images.sum(dtype=np.float64))
        for name, values in image_statistics(images).items():
            entry["sums"][name] += float(values.sum(dtype=np.float64))
            entry["histograms"][name] += np.histogram(values, bins=BINS, range=EDGES[name])[0]
        if split == "train":
            for image, label in zip(images, labels):
                kept = partial["samples"].setdefault(int(label), [])
                if len(kept) < samples_per_class:
                    kept.append(image.tobytes())
    yield partial


def merge(a: dict, b: dict, per_class: int) -> dict:
    for split in SPLITS:
        left, right = a["splits"][split], b["splits"][split]
        left["records"] += right["records"]
        left["labels"] = left["labels"] + right["labels"]
        left["pixel_sum"] += right["pixel_sum"]
        for name in EDGES:
            left["sums"][name] += right["sums"][name]
            left["histograms"][name] = left["histograms"][name] + right["histograms"][name]
    for label, images in b["samples"].items():
        a["samples"][label] = (a["samples"].get(label, []) + images)[:per_class]
    return a


# ---- driver -------------------------------------------------------------------------------
def report(total: dict, fraction: float, seconds: float) -> dict:
    splits = {}
    for split in SPLITS:
        entry = total["splits"][split]
        count = max(entry["records"], 1)
        splits[split] = {
            "records_analysed": entry["records"],
            "label_counts": {LABEL_NAMES[i]: int(c) for i, c in enumerate(entry["labels"])},
            "mean_pixel_value": entry["pixel_sum"] / (count * 32 * 32 * 3),
            **{f"mean_{name}": entry["sums"][name] / count for name in EDGES},
            "histograms": {name: {"range": list(EDGES[name]), "counts": entry["histograms"][name].tolist()} for name in EDGES},
        }
    return {
        "fraction": fraction,
        "seconds": round(seconds, 1),
        "splits": splits,
        "global_mean_pixel_value": splits["train"]["mean_pixel_value"],
    }


def draw_figures(result: dict, samples: dict, out: Path, per_class: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    fig, ax = plt.subplots(figsize=(9, 4))
    positions = np.arange(NUM_CLASSES)
    for offset, split in ((-0.2, "train"), (0.2, "test")):
        counts = list(result["splits"][split]["label_counts"].values())
        ax.bar(positions + offset, counts, width=0.4, label=split)
    ax.set_xticks(positions, LABEL_NAMES, rotation=30)
    ax.set_ylabel("images")
    ax.set_title("Label distribution")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    ax.legend(loc="upper right", ncols=2)
    save(fig, "labels.png")

    train = result["splits"]["train"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name, title in (
        (axes[0], "brightness", "Brightness (per-image mean)"),
        (axes[1], "contrast", "Contrast (per-image standard deviation)"),
    ):
        low, high = EDGES[name]
        edges = np.linspace(low, high, BINS + 1)
        ax.stairs(train["histograms"][name]["counts"], edges, fill=True)
        ax.axvline(train[f"mean_{name}"], color="black", linestyle="--", label=f"mean {train[f'mean_{name}']:.1f}")
        ax.set_title(title)
        ax.set_xlabel("pixel value")
        ax.legend()
    save(fig, "brightness_contrast.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    edges = np.linspace(*EDGES["pixel_range"], BINS + 1)
    ax.stairs(train["histograms"]["pixel_range"]["counts"], edges, fill=True)
    ax.axvline(train["mean_pixel_range"], color="red", label=f"mean {train['mean_pixel_range']:.1f}")
    ax.set_title("Per-image pixel range (max - min)")
    ax.set_xlabel("range")
    ax.legend()
    save(fig, "pixel_range.png")

    fig, axes = plt.subplots(NUM_CLASSES, per_class, figsize=(per_class * 0.9, NUM_CLASSES * 0.95), squeeze=False)
    for label in range(NUM_CLASSES):
        images = samples.get(label, [])
        for column in range(per_class):
            ax = axes[label][column]
            ax.axis("off")
            if column < len(images):
                ax.imshow(np.frombuffer(images[column], np.uint8).reshape(32, 32, 3))
        axes[label][0].set_title(LABEL_NAMES[label], fontsize=7, loc="left")
    save(fig, "samples.png")
    return written


def run(args) -> dict:
    started = time.monotonic()
    storage = open_storage(args.data)
    manifest_path = storage.join(args.data, "manifest.json")
    if not storage.exists(manifest_path):
        raise FileNotFoundError(f"{manifest_path} not found: stage the dataset first ('./kit stage')")
    manifest = json.loads(storage.read_bytes(manifest_path))
    shards = [
        (split, index, shard["file"]) for split in SPLITS for index, shard in enumerate(manifest["splits"][split]["shards"])
    ]
    spark = spark_session("eda-cifar10", args.master)
    try:
        from jobs.lib.progress import spark_progress

        data, fraction, seed, per_class = args.data, args.fraction, args.seed, args.samples_per_class
        with spark_progress(spark.sparkContext, "eda: statistics in the executors"):
            total = (
                spark.sparkContext.parallelize(shards, len(shards))
                .mapPartitions(lambda part: shard_statistics(part, data, fraction, seed, per_class))
                .reduce(lambda a, b: merge(a, b, per_class))
            )
    finally:
        spark.stop()
    result = report(total, args.fraction, time.monotonic() - started)
    out = Path(args.out)
    result["figures"] = draw_figures(result, total["samples"], out, args.samples_per_class)
    (out / "eda.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> dict:
    return run_main("eda", run, parse_args(argv), (FileNotFoundError,), hide=("splits",))


if __name__ == "__main__":
    main()
