"""The kit's tasks: `./kit --list` shows them, `./kit --help TASK` explains one."""
from invoke import Collection

from cli import cluster, images, testing

namespace = Collection(images)
for module in (cluster, testing):
    for task_ in Collection.from_module(module).tasks.values():
        namespace.add_task(task_)
