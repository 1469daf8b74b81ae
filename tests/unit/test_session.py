"""The jobs package as the executors get it."""

import zipfile

from jobs.lib.session import package_zip


def test_the_zip_shipped_to_executors_holds_the_whole_jobs_package():
    names = set(zipfile.ZipFile(package_zip()).namelist())
    assert {"jobs/__init__.py", "jobs/train_cnn.py", "jobs/lib/__init__.py", "jobs/lib/barrier_training.py"} <= names
    assert all(name.startswith("jobs/") for name in names)
