"""Turn invoke's config (invoke.yaml, INVOKE_* env, flags) into the kit's typed settings."""
from __future__ import annotations

from invoke import Context

from cluster.topology import ClusterShape
from images.build import image_specs


def image_tags(c: Context) -> dict[str, str]:
    return {spec.name: spec.tag for spec in image_specs(c.config.images.prefix, c.config.images.debian_image)}


def cluster_shape(c: Context, project: str | None = None) -> ClusterShape:
    settings = c.config.cluster
    tags = image_tags(c)
    return ClusterShape(
        project=project or settings.project, hadoop_image=tags["hadoop"], spark_image=tags["spark"],
        datanodes=int(settings.datanodes), replication=int(settings.replication),
        worker_cores=int(settings.worker_cores), worker_memory_gb=int(settings.worker_memory_gb),
        worker_container_memory_gb=int(settings.worker_container_memory_gb),
        executor_cores=int(settings.executor_cores), executor_memory_gb=int(settings.executor_memory_gb),
        bind_address=str(settings.bind_address),
        namenode_ui_port=int(settings.namenode_ui_port), spark_master_ui_port=int(settings.spark_master_ui_port),
        spark_worker_ui_port=int(settings.spark_worker_ui_port), spark_history_ui_port=int(settings.spark_history_ui_port),
        startup_timeout=float(settings.startup_timeout))
