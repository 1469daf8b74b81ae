from cli.spread import ratio_markdown, ratio_table, round_ratios, verdict


def test_a_rounds_ratios_compare_runs_of_the_same_round():
    ratios = round_ratios({1: 200.0, 2: 380.0, "plain": 210.0, "ceiling": 400.0})
    assert ratios == {"efficiency": 0.95, "kit_vs_plain": 200.0 / 210.0, "widest_vs_ceiling": 0.95}


def test_a_target_is_met_only_when_the_whole_range_clears_it():
    assert verdict({"low": 0.91, "high": 0.97, "rounds": 3}, 0.90) == "met"
    assert verdict({"low": 0.85, "high": 0.97, "rounds": 3}, 0.90) == "not settled"
    assert verdict({"low": 0.70, "high": 0.89, "rounds": 5}, 0.90) == "missed"
    assert verdict({"low": 0.95, "high": 0.95, "rounds": 1}, 0.90).startswith("not settled (1 round(s)")


def test_the_table_gives_median_range_and_verdict_per_ratio():
    rounds = [{1: 200.0, 2: 360.0, "plain": 200.0}, {1: 210.0, 2: 400.0, "plain": 230.0}, {1: 190.0, 2: 350.0, "plain": 195.0}]
    table = ratio_table(rounds)
    assert table["efficiency"]["median"] == 0.921 and table["efficiency"]["low"] == 0.9
    assert table["efficiency"]["verdict"] == "met"
    assert table["kit_vs_plain"]["verdict"] == "not settled"  # 1.0, 0.913, 0.974
    assert "widest_vs_ceiling" not in table  # no ceiling measured, no claim
    text = ratio_markdown(table)
    assert "Ratios over 3 interleaved round(s)" in text and "| efficiency |" in text
