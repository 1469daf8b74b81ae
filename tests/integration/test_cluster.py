"""The cluster foundation on real containers: HDFS, Spark standalone, barrier mode, lifecycle."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from cluster.lifecycle import DRIVER, JobTimeLimit, exec_bounded
from cluster.readiness import wait_healthy
from tests.integration.support import ROOT, result_of, run_in_client

JOBS = "/opt/dlkit/tests/integration/jobs"


def test_status_reports_a_healthy_cluster_with_two_datanodes_and_a_four_core_worker(cluster):
    report = cluster.status()
    assert {s["name"]: s["health"] for s in report["services"]} == {
        "namenode": "healthy",
        "datanode-1": "healthy",
        "datanode-2": "healthy",
        "spark-master": "healthy",
        "spark-worker": "healthy",
        "spark-history": "healthy",
    }
    assert report["hdfs"]["safemode"] == "OFF"
    assert report["hdfs"]["live_datanodes"] == 2
    assert [(w["state"], w["cores"]) for w in report["spark"]["workers"]] == [("ALIVE", 4)]
    assert report["spark"]["executor_slots"] == 2


def test_web_uis_answer_on_loopback_only(cluster):
    uis = {s["name"]: s["ui"] for s in cluster.status()["services"] if s["ui"]}
    assert set(uis) == {"namenode", "spark-master", "spark-worker", "spark-history"}
    for name, url in uis.items():
        assert url.startswith("http://127.0.0.1:"), url
    page = {"namenode": "/dfshealth.html", "spark-master": "/", "spark-worker": "/", "spark-history": "/"}
    for name, url in uis.items():
        with urllib.request.urlopen(url + page[name], timeout=10) as response:
            assert response.status == 200, name


def test_hdfs_folders_belong_to_the_job_user(cluster):
    listing = cluster.hdfs(["dfs", "-ls", "/"])
    rows = {line.split()[-1]: line.split() for line in listing.splitlines() if line.startswith("d")}
    assert rows["/spark-events"][2] == "spark" and rows["/data"][2] == "spark"
    assert rows["/tmp"][0] == "drwxrwxrwt"


def test_a_file_written_from_a_client_container_reads_back_byte_identical(cluster):
    result = result_of(
        run_in_client(cluster, ["python", f"{JOBS}/hdfs_roundtrip.py", "/tmp/roundtrip.bin", str(5 * 1024 * 1024 + 7), "2"])
    )
    assert result["length"] == 5 * 1024 * 1024 + 7
    assert result["read_sha256"] == result["written_sha256"]
    # A second, independent client (Hadoop's own Java CLI) reads the very same bytes.
    cluster.hdfs(["dfs", "-get", "-f", "/tmp/roundtrip.bin", "/tmp/roundtrip.bin"])
    code, digest = exec_bounded(cluster.container("namenode"), ["sha256sum", "/tmp/roundtrip.bin"], 60, "sha256sum")
    assert code == 0 and digest.decode().split()[0] == result["written_sha256"]


def test_a_file_with_replication_two_survives_stopping_one_datanode(cluster):
    written = result_of(
        run_in_client(cluster, ["python", f"{JOBS}/hdfs_roundtrip.py", "/tmp/replicated.bin", str(3 * 1024 * 1024), "2"])
    )
    cluster.hdfs(["dfs", "-setrep", "-w", "2", "/tmp/replicated.bin"])  # returns once 2 replicas exist
    report = cluster.hdfs(["fsck", "/tmp/replicated.bin", "-files", "-blocks", "-locations"])
    assert "Status: HEALTHY" in report and re.search(r"Under-replicated blocks:\s+0 ", report)
    assert len(set(re.findall(r"DatanodeInfoWithStorage\[([\d.]+):", report))) == 2, report
    datanode = cluster.container("datanode-2")
    datanode.stop(timeout=10)
    try:
        read = result_of(run_in_client(cluster, ["python", f"{JOBS}/hdfs_read.py", "/tmp/replicated.bin"]))
        assert read == {"sha256": written["written_sha256"], "length": 3 * 1024 * 1024}
    finally:
        datanode.start()
        wait_healthy([("datanode-2", datanode), ("namenode", cluster.container("namenode"))], timeout=180, probe=cluster.probe)


@pytest.fixture(scope="module")
def probe(cluster):
    return result_of(run_in_client(cluster, ["spark-submit", DRIVER, f"{JOBS}/probe_executors.py"]))


def test_a_pyspark_job_runs_on_exactly_two_executors_of_two_cores(probe):
    assert probe["sum_of_squares"] == sum(x * x for x in range(1000))
    assert [e["cores"] for e in probe["executors"]] == [2, 2]
    assert all(e["tasks"] > 0 for e in probe["executors"]), probe["executors"]


def test_a_barrier_stage_of_two_tasks_runs_one_task_per_executor(probe):
    barrier = sorted(probe["barrier"], key=lambda task: task["partition"])
    assert [task["partition"] for task in barrier] == [0, 1]
    assert all(task["gathered"] == ["0", "1"] for task in barrier)
    addresses = barrier[0]["addresses"]
    assert len(set(addresses)) == 2, f"both barrier tasks ran on one executor: {addresses}"


def test_a_client_job_past_its_time_limit_is_stopped_with_its_clean_up_and_removed(cluster):
    lines: list[str] = []
    job = "trap 'echo cleaning up; exit 143' TERM; echo started; while :; do sleep 1; done"
    started = time.monotonic()
    with pytest.raises(JobTimeLimit, match="ran past its time limit of 5s"):
        cluster.run_client(["sh", "-c", job], ROOT, out=lines.append, timeout=5)
    assert lines.index("started") < lines.index("cleaning up")  # SIGTERM, as Ctrl-C: its clean-up ran
    assert time.monotonic() - started < 60
    assert cluster.running_clients() == [] and not [c for c in cluster.containers() if "-client-" in c.name]
