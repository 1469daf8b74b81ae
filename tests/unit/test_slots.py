"""train_cnn.check_slots on a fake clock: slow executor registration is waited for, too few slots are not."""

import pytest

from jobs import train_cnn


class FakeScheduler:
    """Free slots as the scheduler reports them at given clock times; sleeping advances the clock."""

    def __init__(self, monkeypatch, timeline: list[tuple[float, int]]):
        self.now, self.timeline = 0.0, timeline
        monkeypatch.setattr(train_cnn.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(train_cnn.time, "sleep", self.sleep)
        monkeypatch.setattr(train_cnn, "free_slots", lambda sc, cores: self.free())

    def sleep(self, seconds):
        self.now += seconds

    def free(self) -> int:
        return [free for at, free in self.timeline if at <= self.now][-1]


def test_executors_registering_late_on_a_loaded_host_are_waited_for(monkeypatch, capsys):
    # the CI failure: nothing registered within the old 20 s, the executors came at 35 s
    clock = FakeScheduler(monkeypatch, [(0, 0), (35, 2), (37, 4)])
    assert train_cnn.check_slots(None, slots=2, cores_per_slot=1) == 2
    assert clock.now == pytest.approx(36, abs=2)
    assert "train: waiting for executors: 0 of 2 slot(s) free" in capsys.readouterr().err


def test_no_executor_at_all_is_said_as_such_after_the_registration_wait(monkeypatch):
    clock = FakeScheduler(monkeypatch, [(0, 0)])
    with pytest.raises(train_cnn.SetupError, match="no executor registered with the driver within 120s") as error:
        train_cnn.check_slots(None, slots=1, cores_per_slot=1)
    assert "--slots 0" not in str(error.value)  # never advise asking for nothing
    assert clock.now == pytest.approx(120, abs=2)


def test_too_few_slots_is_refused_once_no_more_appear(monkeypatch):
    clock = FakeScheduler(monkeypatch, [(0, 0), (10, 1), (14, 2)])
    with pytest.raises(train_cnn.SetupError, match="asked for 3 slots of 2 cores, but the cluster has 2 free"):
        train_cnn.check_slots(None, slots=3, cores_per_slot=2)
    assert clock.now == pytest.approx(14 + 20, abs=2)  # 20 s after the last new slot, not 120 s


def test_too_many_slots_are_refused_once_every_slot_the_workers_have_is_free(monkeypatch):
    clock = FakeScheduler(monkeypatch, [(0, 0), (8, 2)])
    with pytest.raises(train_cnn.SetupError, match="asked for 3 slots of 2 cores, but the cluster has 2 free"):
        train_cnn.check_slots(None, slots=3, cores_per_slot=2, most=2)
    assert clock.now == pytest.approx(8, abs=2)  # not 20 s more for a slot that cannot come


def test_the_masters_alive_workers_bound_the_slots():
    import contextlib
    import io
    import json

    def opener(state):
        return lambda url, timeout: contextlib.closing(io.StringIO(json.dumps(state)))

    workers = [{"cores": 4, "state": "ALIVE"}, {"cores": 3, "state": "ALIVE"}, {"cores": 8, "state": "DEAD"}]
    assert train_cnn.master_slot_capacity("spark://m:7077", 2, opener({"workers": workers})) == 3
    assert train_cnn.master_slot_capacity("spark://m:7077", 1, opener({"workers": workers})) == 7
    assert train_cnn.master_slot_capacity("spark://m:7077", 2, opener({"workers": []})) is None  # none yet: no bound
    assert train_cnn.master_slot_capacity("spark://m:7077", 2, opener(["not", "a", "state"])) is None
    assert train_cnn.master_slot_capacity("local[2]", 2, opener({"workers": workers})) is None


class FakeApplication:
    """An application the master ends at the first failure; renew() starts the next one."""

    def __init__(self):
        self.started, self.stopped = 1, False
        self.sc = f"context-{self.started}"

    def ended(self) -> bool:
        return self.stopped

    def renew(self) -> None:
        self.started += 1
        self.stopped = False
        self.sc = f"context-{self.started}"


def test_an_application_the_master_ended_is_replaced_before_the_next_attempt(monkeypatch, capsys):
    app = FakeApplication()
    waited_on = []
    monkeypatch.setattr(train_cnn, "check_slots", lambda sc, *args, **kwargs: waited_on.append(sc))
    calls = []

    def submit():
        calls.append(app.sc)
        if len(calls) == 1:
            app.stopped = True  # "Master removed our application: FAILED"
            raise RuntimeError("Job aborted due to stage failure: SparkContext was shut down")
        return {"ok": True}

    args = type("Args", (), {"attempts": 3, "recovery_wait": 180.0, "slots": 2, "cores_per_slot": 1})()
    assert train_cnn.run_with_retries(app, args, submit) == {"ok": True}
    assert calls == ["context-1", "context-2"] and waited_on == ["context-2"]
    assert "starting a new application" in capsys.readouterr().err


def test_a_failure_that_leaves_the_application_alive_keeps_it(monkeypatch):
    app = FakeApplication()
    monkeypatch.setattr(train_cnn, "check_slots", lambda sc, *args, **kwargs: None)
    outcomes = iter([RuntimeError("ExecutorLostFailure (executor 1 exited)"), {"ok": True}])

    def submit():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    args = type("Args", (), {"attempts": 2, "recovery_wait": 5.0, "slots": 2, "cores_per_slot": 1})()
    assert train_cnn.run_with_retries(app, args, submit) == {"ok": True}
    assert app.started == 1


def test_executors_that_keep_coming_and_going_do_not_make_it_wait_for_ever(monkeypatch):
    flapping = [(t, 1 if (t // 10) % 2 else 0) for t in range(0, 2000, 10)]  # a slot every other 10 s
    clock = FakeScheduler(monkeypatch, flapping)
    with pytest.raises(train_cnn.SetupError, match="kept changing .* dying and coming back"):
        train_cnn.check_slots(None, slots=2, cores_per_slot=1)
    assert clock.now == pytest.approx(120 + 3 * 20, abs=3)


def test_a_resumed_run_keeps_its_own_settings_and_refuses_a_different_one_asked_for():
    recorded = {"slots": 2, "epochs": 4, "batch_per_worker": 16, "recipe": "paper", "steps_per_epoch": 100}
    driver = ["--data", "d", "--runs", "r", "--attempts", "3", "--recovery-wait", "9"]
    args = train_cnn.parse_args([*driver, "--resume", "run-1"])
    assert args.given() == {"data"}
    args = train_cnn.resume_settings(args, recorded)
    assert (args.slots, args.epochs, args.steps_per_epoch) == (2, 4, 100)
    assert args.gradient_dtype == "float32"  # recorded before the setting existed: what such runs used
    args = train_cnn.parse_args([*driver, "--resume", "run-1", "--slots", "1", "--epochs", "4"])
    with pytest.raises(train_cnn.SetupError, match=r"--slots 1 \(the run has 2\)") as error:
        train_cnn.resume_settings(args, recorded)
    assert "--epochs" not in str(error.value)  # the same value asked again is no conflict
    args = train_cnn.parse_args([*driver, "--resume", "run-1", "--gradient-dtype", "bfloat16"])
    with pytest.raises(train_cnn.SetupError, match=r"--gradient-dtype bfloat16 \(the run has float32\)"):
        train_cnn.resume_settings(args, recorded)  # a run recorded before the setting used float32


def test_an_application_ended_while_the_driver_waits_for_slots_is_replaced_too(monkeypatch, capsys):
    # the stage fails first (executors lost), the master removes the application a second later
    app = FakeApplication()
    waits = []

    def check_slots(sc, *args, ended, **kwargs):
        waits.append(sc)
        if len(waits) == 1:
            app.stopped = True
            assert ended()
            raise train_cnn.ApplicationEnded("ended")

    monkeypatch.setattr(train_cnn, "check_slots", check_slots)
    args = type("Args", (), {"attempts": 3, "recovery_wait": 180.0, "slots": 2, "cores_per_slot": 1})()
    train_cnn.wait_for_slots(app, args)
    assert waits == ["context-1", "context-2"]
    assert "starting a new application" in capsys.readouterr().err


def test_check_slots_stops_waiting_when_the_application_is_gone(monkeypatch):
    FakeScheduler(monkeypatch, [(0, 0)])
    gone = iter([False, False, True])
    with pytest.raises(train_cnn.ApplicationEnded):
        train_cnn.check_slots(None, slots=2, cores_per_slot=1, ended=lambda: next(gone))


def test_an_application_a_restarted_master_no_longer_lists_has_ended():
    import contextlib
    import io
    import json

    assert train_cnn.master_json_url("spark://spark-master:7077") == "http://spark-master:8080/json/"
    assert train_cnn.master_json_url("local-cluster[2,2,2048]") is None

    def opener(apps):
        def open_url(url, timeout):
            if apps is None:
                raise OSError("connection refused")  # the master is restarting
            return contextlib.closing(io.StringIO(json.dumps({"activeapps": [{"id": a} for a in apps]})))

        return open_url

    assert train_cnn.master_active_apps("spark://m:7077", opener(["app-1"])) == {"app-1"}
    assert train_cnn.master_active_apps("spark://m:7077", opener(None)) is None  # away is not a verdict
    assert train_cnn.master_active_apps("local[2]", opener([])) is None


def test_the_progress_follower_shows_the_last_epochs_when_training_ends(capsys):
    import json
    import threading

    row = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4, "seconds": 9.0, "train_seconds": 8.0}
    rows = [{"epoch": epoch, **row, "images_per_second": 300.0} for epoch in (1, 2)]

    class Storage:
        def join(self, *parts):
            return "/".join(parts)

        def read_bytes(self, path):
            assert path == "/runs/r.partial/progress.jsonl"
            return "\n".join(json.dumps(r) for r in rows).encode()

    stop = threading.Event()
    stop.set()  # training ended before the follower's next read was due
    train_cnn.follow_progress(Storage(), "/runs/r.partial", 2, stop)
    shown = capsys.readouterr().err
    assert "train: epoch 1/2 loss 1.0000" in shown and "train: epoch 2/2" in shown
