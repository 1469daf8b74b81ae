"""Baseline: Spark MLlib's MultilayerPerceptronClassifier on the flattened pixels of the staged data.

Reads the staged raw batch files (the same records as the TFRecord shards), parses them in the
executors, and trains and scores with MLlib alone: Spark's own answer to the same task.
"""

from __future__ import annotations

import dataclasses
import time

from jobs.lib.contract import JobArgs, flag
from jobs.lib.result import run_main
from jobs.lib.session import spark_session


@dataclasses.dataclass(frozen=True)
class MllibArgs(JobArgs):
    data: str = flag("storage URL of the staged dataset (raw/ inside)")
    max_iter: int = flag("the MLP's maxIter", low=1)
    hidden: int = flag("hidden units", default=128, low=1)
    seed: int = flag(default=42)
    master: str | None = flag("Spark master (default: spark-defaults)", default=None)


def parse_args(argv) -> MllibArgs:
    return MllibArgs.parse(argv, __doc__)


def rows_of(path_and_data):
    from pyspark.ml.linalg import Vectors

    from jobs.lib.cifar import parse_records

    path, data = path_and_data
    name = path.rsplit("/", 1)[-1]
    labels, images = parse_records(name, bytes(data))
    split = "test" if name.startswith("test") else "train"
    for label, image in zip(labels, images):
        yield split, float(label), Vectors.dense(image.reshape(-1) / 255.0)


def run(args) -> dict:
    from pyspark.ml.classification import MultilayerPerceptronClassifier
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    spark = spark_session("mllib-mlp-cifar10", args.master, {"spark.task.cpus": "1"})
    try:
        raw = args.data.rstrip("/") + "/raw/*.bin"
        frame = spark.createDataFrame(
            spark.sparkContext.binaryFiles(raw).flatMap(rows_of), ["split", "label", "features"]
        ).cache()
        train, test = frame.filter("split = 'train'"), frame.filter("split = 'test'")
        started = time.monotonic()
        model = MultilayerPerceptronClassifier(
            layers=[3072, args.hidden, 10], maxIter=args.max_iter, seed=args.seed, blockSize=128
        ).fit(train)
        train_seconds = time.monotonic() - started
        predictions = model.transform(test)
        accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(predictions)
        records = train.count()
    finally:
        spark.stop()
    return {
        "model": f"MLP 3072-{args.hidden}-10",
        "max_iter": args.max_iter,
        "test_accuracy": accuracy,
        "train_seconds": round(train_seconds, 1),
        "train_records": records,
    }


def main(argv=None) -> dict:
    return run_main("mllib", run, parse_args(argv))


if __name__ == "__main__":
    main()
