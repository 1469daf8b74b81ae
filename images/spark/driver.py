"""Run a PySpark job file as spark-submit's main, then make sure the driver JVM ends with it.

Spark 3.4's BarrierCoordinator starts a non-daemon timer thread it never cancels, so after
any barrier stage (every MirroredStrategyRunner run) the driver JVM outlives the finished job
(SPARK-49479, fixed only after 3.4.4). Ending the JVM with System.exit runs Spark's shutdown
hooks (event log, context stop) and carries the job's own exit code to spark-submit.

usage: spark-submit /opt/kit/driver.py JOB.py [ARGS...]
"""

import runpy
import signal
import sys
import traceback

INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C


def interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def exit_code(error: SystemExit) -> int:
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def run(job: str, args: list) -> int:
    sys.argv = [job, *args]
    try:
        runpy.run_path(job, run_name="__main__")
    except SystemExit as error:
        return exit_code(error)
    except KeyboardInterrupt as error:  # Ctrl-C, or `docker stop`'s SIGTERM: the job's cleanup has run
        print(f"job: interrupted ({error or 'SIGINT'}); its clean-up ran", file=sys.stderr)
        return INTERRUPTED
    except BaseException:  # the job's traceback, as Python would print it
        traceback.print_exc()
        return 1
    return 0


def end_jvm(code: int) -> None:
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:  # the job never started Spark: nothing can outlive it
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        gateway.jvm.System.exit(code)
    except Exception:  # the JVM is gone before it could answer: that is the point
        pass


def main() -> None:
    if len(sys.argv) < 2:
        print("usage: spark-submit /opt/kit/driver.py JOB.py [ARGS...]", file=sys.stderr)
        sys.exit(2)
    # `docker stop` sends SIGTERM to the whole process group (tini -g): the job unwinds, its
    # finally blocks remove what it half-wrote, and the JVM's own shutdown hooks stop Spark.
    signal.signal(signal.SIGTERM, interrupt)
    code = run(sys.argv[1], sys.argv[2:])
    end_jvm(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
