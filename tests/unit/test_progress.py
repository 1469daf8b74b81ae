import io
import time

from cli.progress import JobOutput, LiveLine


def test_a_log_gets_a_line_per_phase_and_a_heartbeat_while_the_work_is_silent():
    log = io.StringIO()
    line = LiveLine("build", stream=log, heartbeat=0.05)
    line.update("Step 1/2")
    line.update("Step 1/2", "some output")  # same phase, within the heartbeat: no new line
    started = time.monotonic()
    while "some output" not in log.getvalue().split("\n", 1)[-1] and time.monotonic() < started + 10:
        line._stop.wait(0.05)  # silent work: the ticker still reports (however busy the host)
    line.update("Step 2/2")
    line.done("built")
    lines = log.getvalue().splitlines()
    assert lines[0].endswith("Step 1/2")
    assert any("some output" in text for text in lines[1:-2])
    assert lines[-2].endswith("Step 2/2") and lines[-1].endswith("built")


def test_jobs_started_in_the_same_second_keep_logs_of_their_own_and_label_their_lines(tmp_path):
    shown: list[str] = []
    path = tmp_path / "logs" / "train_cnn-20261208-001500.log"
    first = JobOutput(path, show=lambda line, flush: shown.append(line), label="seed 53")
    second = JobOutput(path, show=lambda line, flush: shown.append(line), label="seed 54")
    first("train: epoch 1/10")
    second("train: epoch 1/10 of the other")
    first.close(), second.close()
    assert second.path == tmp_path / "logs" / "train_cnn-20261208-001500-2.log" and first.path == path
    assert path.read_text() == "train: epoch 1/10\n" and second.path.read_text() == "train: epoch 1/10 of the other\n"
    assert shown == ["[seed 53] train: epoch 1/10", "[seed 54] train: epoch 1/10 of the other"]
    assert "full output: " + str(second.path) in second.where()
