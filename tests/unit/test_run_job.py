"""cli.execution.run_job against a small fake cluster: one status read, clear refusals."""

import json

import pytest
from invoke import Exit

from cli.execution import JobInterrupted, run_job
from cluster.lifecycle import JobTimeLimit
from jobs.lib import result as result_line


def healthy_report(state="running"):
    return {
        "services": [
            {"name": "namenode", "state": state, "health": "healthy"},
            {"name": "spark-master", "state": "running", "health": "healthy"},
        ],
        "hdfs": {"available": True, "dead_datanodes": 0},
    }


class FakeCluster:
    def __init__(self, report, output_lines, code=0):
        self.report, self.output_lines, self.code = report, output_lines, code
        self.status_reads, self.commands = 0, []

    def status(self):
        self.status_reads += 1
        return self.report

    def run_client(self, command, project_dir, out, **kwargs):
        self.commands.append(command)
        for line in self.output_lines:
            out(line)
        return self.code


def result_text(payload):
    return result_line.PREFIX + json.dumps(payload)


def test_a_report_given_is_not_read_again():
    cluster = FakeCluster(healthy_report(), ["working", result_text({"ok": 1})])
    assert run_job(cluster, "stage_cifar", ["--x"], report=healthy_report()) == {"ok": 1}
    assert cluster.status_reads == 0
    assert cluster.commands[0][-2:] == ["/opt/dlkit/jobs/stage_cifar.py", "--x"]


def test_without_a_report_the_cluster_is_read_once():
    cluster = FakeCluster(healthy_report(), [result_text({"ok": 2})])
    assert run_job(cluster, "eda_cifar", [], plain=True) == {"ok": 2}
    assert cluster.status_reads == 1 and cluster.commands[0][0] == "python"


def test_a_half_started_cluster_is_refused_before_anything_runs():
    cluster = FakeCluster(healthy_report(state="exited"), [])
    with pytest.raises(Exit, match="half-started"):
        run_job(cluster, "train_cnn", [])
    assert cluster.commands == []


def test_a_failed_job_and_a_missing_result_line_say_so():
    with pytest.raises(Exit, match="failed .exit code 3"):
        run_job(FakeCluster(healthy_report(), ["boom"], code=3), "train_cnn", [])
    with pytest.raises(Exit, match="without a result line"):
        run_job(FakeCluster(healthy_report(), ["no result"]), "train_cnn", [])


def test_tensorflows_cpu_host_noise_stays_in_the_log_file_not_on_the_terminal(tmp_path, capsys):
    noise = [
        "2026-11-22 23:34:40.437184: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] Unable to "
        "register cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered",
        "2026-11-22 23:35:30.429046: W tensorflow/core/framework/local_rendezvous.cc:404] Local rendezvous is "
        "aborting with status: OUT_OF_RANGE: End of sequence",
        "\t [[{{node IteratorGetNext}}]]",
    ]
    real = "2026-11-22 23:35:31.000000: E tensorflow/core/kernels/x.cc:1] Something really failed"
    cluster = FakeCluster(healthy_report(), [*noise, "train: epoch 1/1", real, result_text({"ok": 3})])
    assert run_job(cluster, "train_cnn", [], log=tmp_path / "train.log") == {"ok": 3}
    shown = capsys.readouterr().out
    assert "cuFFT" not in shown and "rendezvous" not in shown and "IteratorGetNext" not in shown
    assert "train: epoch 1/1" in shown and "Something really failed" in shown
    assert (tmp_path / "train.log").read_text().splitlines()[:3] == noise


def test_a_job_past_its_time_limit_ends_in_one_line_naming_the_setting():
    class SlowCluster(FakeCluster):
        def run_client(self, command, project_dir, out, **kwargs):
            raise JobTimeLimit("dlkit-client-1", 7200)

    with pytest.raises(JobInterrupted) as stopped:
        run_job(SlowCluster(healthy_report(), []), "train_cnn", [])
    assert stopped.value.code == 124
    assert "ran past its time limit of 2 h (cluster.job_time_limit_hours)" in str(stopped.value.message)
    kept = stopped.value.keeping("the run resumes")
    assert kept.code == 124 and "time limit" in kept.message and kept.message.endswith("the run resumes")


def test_only_a_command_that_trains_the_run_names_it():
    from cluster.lifecycle import names_run

    assert names_run(["spark-submit", "x.py", "--run-id", "r1", "--slots", "2"], "r1")
    assert names_run(["spark-submit", "x.py", "--resume", "r1"], "r1")
    assert not names_run(["spark-submit", "x.py", "--run-id", "r1", "--slots", "2"], "2")  # a value of another flag


def test_a_stop_after_the_run_completed_is_not_reported_as_resumable():
    from cli.pipeline import finished

    class Backend:
        runs_url = "hdfs://namenode:8020/runs"

        def __init__(self, files):
            self.files = files

        def read_json_if_exists(self, url):
            if isinstance(self.files, Exception):
                raise self.files
            return self.files.get(url)

    assert finished(Backend({"hdfs://namenode:8020/runs/r1/metrics.json": {"epochs_run": 3}}), "r1")
    assert not finished(Backend({"hdfs://namenode:8020/runs/r1.partial/metrics.json": {}}), "r1")
    assert not finished(Backend(OSError("namenode not answering")), "r1")


def test_sigterm_stops_a_task_the_way_ctrl_c_does():
    import signal
    import subprocess
    import sys

    waiting = (
        "from cli.signals import stop_on_sigterm\n"
        "import time\n"
        "stop_on_sigterm()\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt as stop:\n"
        "    print('clean-up ran after', stop, flush=True)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", waiting], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert output.strip() == "clean-up ran after SIGTERM" and process.returncode == 0, output
