"""Each job's arguments: the dataclass the launcher builds turns into argv and parses back into itself."""

import dataclasses

import pytest

from jobs.eda_cifar import EdaArgs
from jobs.stage_cifar import StageArgs
from jobs.train_cnn import TrainArgs, parse_args
from jobs.train_mllib import MllibArgs
from jobs.train_plain import PlainArgs

EXAMPLES = [
    StageArgs(source="{source}", target="hdfs://nn:8020/data/cifar10", shards=16, force=True),
    EdaArgs(data="hdfs://nn:8020/data/cifar10", out="{out}", fraction=0.2),
    MllibArgs(data="hdfs://nn:8020/data/cifar10", max_iter=30),
    PlainArgs(data="/d", epochs=2, batch=16, threads=1, steps_per_epoch=300, first_cpu=1, pin=False, probe_steps=30),
    TrainArgs(
        data="/d",
        runs="/r",
        slots=2,
        cores_per_slot=1,
        epochs=3,
        batch_per_worker=16,
        recipe="tuned",
        gradient_dtype="bfloat16",
        attempts=3,
        recovery_wait=180.0,
        pin_cores=False,
        run_id="r1",
        probe_steps=5,
    ),
]


@pytest.mark.parametrize("args", EXAMPLES, ids=[type(a).__name__ for a in EXAMPLES])
def test_a_jobs_arguments_survive_the_command_line_whole(args):
    assert type(args).parse(args.to_argv()) == args


def test_every_set_value_goes_on_the_command_line_and_a_switch_only_when_turned():
    argv = PlainArgs(data="/d", epochs=2, batch=16, threads=1).to_argv()
    assert argv == [
        "--data",
        "/d",
        "--epochs",
        "2",
        "--batch",
        "16",
        "--threads",
        "1",
        "--patience",
        "5",
        "--seed",
        "42",
        "--first-cpu",
        "0",
        "--probe-steps",
        "0",
    ]
    assert "--no-pin-cores" in dataclasses.replace(EXAMPLES[-1], pin_cores=False).to_argv()


def test_a_new_training_run_needs_the_kits_settings_and_a_resumed_one_only_its_driver_settings(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--data", "/d", "--runs", "/r", "--attempts", "3", "--recovery-wait", "9"])
    assert stopped.value.code == 2 and "required for a new run: --slots, --cores-per-slot" in capsys.readouterr().err
    resumed = parse_args(["--data", "/d", "--runs", "/r", "--attempts", "3", "--recovery-wait", "9", "--resume", "r1"])
    assert resumed.slots is None and resumed.given() == {"data"}
    assert parse_args([*EXAMPLES[-1].to_argv(), "--resume", "r1"]).given() >= {"slots", "recipe", "pin_cores"}
