"""A PySpark job reporting where its work ran: executors, cores, and a 2-task barrier stage."""

import json
import urllib.request

from pyspark import BarrierTaskContext
from pyspark.sql import SparkSession

from jobs.lib.result import emit


def barrier_task(_):
    context = BarrierTaskContext.get()
    gathered = context.allGather(str(context.partitionId()))
    yield {
        "partition": context.partitionId(),
        "gathered": sorted(gathered),
        "addresses": sorted(info.address for info in context.getTaskInfos()),
    }


def main():
    spark = SparkSession.builder.appName("probe-executors").getOrCreate()
    sc = spark.sparkContext
    total = sc.parallelize(range(1000), 8).map(lambda x: x * x).sum()
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"
    with urllib.request.urlopen(url) as response:
        executors = [e for e in json.load(response) if e["id"] != "driver"]
    barrier = sc.parallelize(range(2), 2).barrier().mapPartitions(barrier_task).collect()
    emit(
        {
            "sum_of_squares": total,
            "executors": [{"id": e["id"], "cores": e["totalCores"], "tasks": e["completedTasks"]} for e in executors],
            "barrier": barrier,
        }
    )
    spark.stop()


if __name__ == "__main__":
    main()
