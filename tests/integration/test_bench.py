"""A tiny `./kit bench` against the test cluster writes results.json, report.md and curves.png."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import ROOT


def test_a_tiny_bench_writes_its_results_report_and_curves(cluster, staged, tmp_path):
    env = {**os.environ, "INVOKE_DATA_HDFS_ROOT": "/data/cifar10-test", "INVOKE_DATA_DIR": str(tmp_path / "no-data")}
    command = [sys.executable, "-m", "invoke", "bench", "--project", cluster.shape.project, "--slots", "1,2",
               "--epochs", "1", "--steps-per-epoch", "4", "--cores-per-slot", "2", "--baselines", "plain",
               "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [row["slots"] for row in results["configurations"]] == [1, 2]
    assert results["configurations"][0]["speed_up"] == 1.0
    assert results["configurations"][1]["global_batch"] == 32
    assert results["baselines"]["plain"]["threads"] == 2 and results["kit_vs_plain"] > 0
    assert any("2 slots x 2 cores = 4 cores exceed" in w for w in results["warnings"]) == (os.cpu_count() < 4)
    worker = "spark-worker"
    assert all(row["resources"][worker]["peak_memory_mb"] > 100 for row in results["configurations"])
    report = (tmp_path / "report.md").read_text()
    assert "| 2 slot(s) x 2 core(s) |" in report and "baseline plain" in report
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
