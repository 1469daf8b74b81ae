"""The project's own cluster shape (invoke.yaml's cluster section) for unit tests, with fake image tags."""

import dataclasses
from pathlib import Path

from invoke import Config, Context

from cli.settings import cluster_shape

ROOT = Path(__file__).resolve().parents[2]


def project_context() -> Context:
    config = Config(project_location=str(ROOT))
    config.load_project()
    return Context(config)


def default_shape(**changes):
    shape = cluster_shape(project_context(), project="dlkit")
    return dataclasses.replace(shape, hadoop_image="h:1", spark_image="s:1", **changes)
