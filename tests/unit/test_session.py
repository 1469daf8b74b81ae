"""The jobs package as the executors get it, and the session's quiet Ctrl-C."""

import zipfile

from jobs.lib.session import package_zip


def test_the_zip_shipped_to_executors_holds_the_whole_jobs_package():
    names = set(zipfile.ZipFile(package_zip()).namelist())
    assert {"jobs/__init__.py", "jobs/train_cnn.py", "jobs/lib/__init__.py", "jobs/lib/barrier_training.py"} <= names
    assert all(name.startswith("jobs/") for name in names)


def test_py4j_s_ctrl_c_traceback_is_dropped_and_other_errors_are_kept(caplog):
    import logging

    from jobs.lib.session import QuietInterrupt

    root = logging.getLogger()
    quiet = QuietInterrupt()
    root.addFilter(quiet)
    try:
        root.error("KeyboardInterrupt while sending command.")  # as py4j's send_command logs it
        root.error("Error while sending or receiving.")
    finally:
        root.removeFilter(quiet)
    assert [record.getMessage() for record in caplog.records] == ["Error while sending or receiving."]
