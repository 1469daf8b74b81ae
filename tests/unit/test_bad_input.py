"""Every bad input of the hardening issue, through the real entry points: one line, a non-zero exit,
no traceback, and nothing started (these run without a Docker engine)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke"]
TRAIN_JOB = [sys.executable, "jobs/train_cnn.py", "--data", "file:///nowhere", "--runs", "file:///nowhere"]

CASES = [
    # (command, extra environment, exit code, what the one line must say)
    ([*INVOKE, "train", "--slots", "0"], {}, 2, "kit: --slots 0: must be 1 or more"),
    ([*INVOKE, "train", "--slots", "two"], {}, 2, "kit: --slots two: not a whole number"),
    ([*INVOKE, "train", "--epochs=-1"], {}, 2, "kit: --epochs -1: must be 1 or more"),
    ([*INVOKE, "train", "--attempts", "0"], {}, 2, "kit: --attempts 0: must be 1 or more"),
    ([*INVOKE, "train", "--recipe", "fast"], {}, 2, "kit: --recipe fast: use one of paper, scaled, tuned"),
    ([*INVOKE, "train"], {"INVOKE_CLUSTER_DATANODES": "two"}, 1, "cluster.datanodes"),
    ([*INVOKE, "train"], {"INVOKE_TRAIN_SLOTS": "0"}, 1, "train.slots = 0 must be at least 1"),
    ([*INVOKE, "stage", "--shards", "0"], {}, 2, "kit: --shards 0: must be 1 or more"),
    ([*INVOKE, "eda", "--fraction", "0"], {}, 2, "kit: --fraction 0.0: must be above 0 and at most 1"),
    ([*INVOKE, "bench", "--slots", "1,x"], {}, 1, "kit: --slots = '1,x': give slot counts of 1 or more"),
    ([*INVOKE, "bench", "--baselines", "plain,gpu"], {}, 2, "kit: --baselines: unknown gpu"),
    ([*INVOKE, "bench", "--repeats", "0"], {}, 2, "kit: --repeats 0: must be 1 or more"),
    ([*INVOKE, "bench", "--batch-per-worker", "0"], {}, 2, "kit: --batch-per-worker 0: must be 1 or more"),
    ([*INVOKE, "bench", "--profile"], {"INVOKE_BENCH_PROBE_STEPS": "0"}, 2, "--profile traces the probe's steps"),
    ([*INVOKE, "bench", "--gradient-dtype", "float16"], {}, 2, "kit: --gradient-dtype float16: use one of float32, bfloat16"),
    ([*INVOKE, "train", "--gradient-dtype", "fp8"], {}, 2, "kit: --gradient-dtype fp8: use one of float32, bfloat16"),
    ([*INVOKE, "train"], {"INVOKE_TRAIN_GRADIENT_DTYPE": "int8"}, 1, "train.gradient_dtype"),
    ([*INVOKE, "train"], {"INVOKE_CLUSTER_JOB_TIME_LIMIT_HOURS": "0"}, 1, "cluster.job_time_limit_hours = 0"),
    ([*INVOKE, "bench", "--accuracy-gate", "--epochs", "3"], {}, 1, "--accuracy-gate needs at least 10 epochs"),
    ([*INVOKE, "bench", "--accuracy-gate", "--slots", "2"], {}, 2, "--accuracy-gate compares 1 slot with more"),
    ([*INVOKE, "bench.gate", "--runs", "/nowhere"], {}, 2, "kit: --runs: cannot read /nowhere"),
    ([*INVOKE, "demo", "--steps-per-epoch", "0"], {}, 2, "kit: --steps-per-epoch 0: must be 1 or more"),
    ([*TRAIN_JOB, "--batch-per-worker", "0"], {}, 2, "argument --batch-per-worker: 0 must be 1 or more"),
    ([*TRAIN_JOB, "--keep-checkpoints", "0"], {}, 2, "argument --keep-checkpoints: 0 must be 1 or more"),
]


@pytest.fixture(scope="module")
def outcomes() -> list[subprocess.CompletedProcess]:
    """Every case at once (each is a second of interpreter start-up): their outcomes in CASES order."""
    base = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": "unix:///nonexistent.sock"}
    started = [
        (
            command,
            subprocess.Popen(command, cwd=ROOT, env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        )
        for command, env, _, _ in CASES
    ]
    return [subprocess.CompletedProcess(command, p.wait(60), *p.communicate()) for command, p in started]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[" ".join(c[0][2:5]) for c in CASES])
def test_a_bad_input_is_refused_in_one_line_before_any_work(outcomes, index):
    _, _, code, line = CASES[index]
    done = outcomes[index]
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output
    lines = [text for text in done.stderr.splitlines() if text.strip() and not text.startswith("usage:")]
    assert len(lines) == 1 and line in lines[0], output
