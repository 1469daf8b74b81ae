"""The SparkSession of every job: quiet logs, and the jobs package shipped to the executors.

Executors do not see the driver's files, so functions from jobs.* would not unpickle there;
zipping the package and adding it with addPyFile works on any master (standalone, embedded
local-cluster, or a user's own cluster).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

from jobs import LEGACY_KERAS

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # jobs/


class QuietInterrupt(logging.Filter):
    """py4j logs a Ctrl-C that lands while Python waits on the JVM as an ERROR with a traceback
    (logging.exception on the root logger, py4j java_gateway.send_command); the job says itself
    that it was interrupted and cleaned up, so that traceback is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "KeyboardInterrupt while sending command."


QUIET_INTERRUPT = QuietInterrupt()  # one instance: a job that starts sessions again adds it once


def package_zip() -> str:
    fd, path = tempfile.mkstemp(prefix="dlkit-jobs-", suffix=".zip")
    os.close(fd)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(PACKAGE_DIR.rglob("*.py")):
            archive.write(file, f"{PACKAGE_DIR.name}/{file.relative_to(PACKAGE_DIR)}")
    return path


def spark_session(app_name: str, master: str | None = None, conf: dict | None = None):
    from pyspark.sql import SparkSession

    # here rather than in the image's driver.py: the embedded backend runs jobs without it
    logging.getLogger().addFilter(QUIET_INTERRUPT)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    executor_env = {f"spark.executorEnv.{key}": value for key, value in LEGACY_KERAS.items()}
    for key, value in {**executor_env, **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    spark.sparkContext.addPyFile(package_zip())
    return spark
