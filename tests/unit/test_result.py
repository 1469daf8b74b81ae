import pytest

from jobs.lib.result import find, run_main


def test_the_last_result_line_wins_and_other_output_is_ignored():
    assert find(["progress", 'RESULT {"a": 1}', "noise", 'RESULT {"a": 2}']) == {"a": 2}
    assert find(["no result here"]) is None


def test_a_user_error_ends_the_job_with_one_line_and_exit_code_1(capsys):
    def run(args):
        raise ValueError("asked for 3 slots, 2 free")

    with pytest.raises(SystemExit) as ended:
        run_main("train", run, None, (ValueError,))
    assert ended.value.code == 1
    assert capsys.readouterr().err == "train: asked for 3 slots, 2 free\n"


def test_hidden_keys_stay_out_of_the_result_line(capsys):
    result = run_main("train", lambda args: {"accuracy": 0.7, "history": [1, 2]}, None, hide=("history",))
    assert result["history"] == [1, 2]
    assert find(capsys.readouterr().out.splitlines()) == {"accuracy": 0.7}
