"""The kit's tasks: `./kit --list` shows them, `./kit --help TASK` explains one."""

from invoke import Collection

from cli import bench, cluster, data, demo, images, pipeline, testing
from cli.signals import stop_on_sigterm

stop_on_sigterm()

namespace = Collection(images, data, bench)
for module in (cluster, pipeline, testing, demo):
    for task_ in Collection.from_module(module).tasks.values():
        namespace.add_task(task_)
