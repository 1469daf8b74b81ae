"""invoke.yaml -> typed settings: every section converted and checked before any work starts."""

import pytest
from invoke import Exit

from cli.settings import cluster_shape, kit_settings, slot_counts
from tests.unit.shapes import project_context


def test_the_project_settings_load_typed_and_shape_the_cluster_from_its_own_section():
    c = project_context()
    settings = kit_settings(c)
    assert settings.train.slots == 2 and isinstance(settings.cluster.startup_timeout, float)
    assert settings.bench.slot_counts == [1, 2]
    assert kit_settings(c) is settings  # read once per config
    shape = cluster_shape(c, project="lab")
    assert shape.project == "lab" and shape.worker_cores == settings.cluster.worker_cores


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("train", "slots", 0, "setting train.slots = 0 must be at least 1"),
        ("train", "recipe", "fast", "setting train.recipe = 'fast' must be one of paper, scaled, tuned"),
        ("cluster", "namenode_ui_port", 70000, "must be at least 0 and at most 65535"),
        ("demo", "eda_fraction", 0, "setting demo.eda_fraction = 0 must be above 0 and at most 1"),
        ("bench", "epochs", "two", "setting bench.epochs = 'two' is not an integer"),
        ("train", "batch_per_worker", 16.5, "is not an integer"),
    ],
)
def test_a_wrong_setting_is_named_with_its_value_and_where_to_fix_it(section, key, value, message):
    c = project_context()
    c.config[section][key] = value
    with pytest.raises(Exit, match=message) as refused:
        kit_settings(c)
    assert f"INVOKE_{section.upper()}_{key.upper()}" in str(refused.value.message)


def test_a_missing_setting_is_named():
    c = project_context()
    del c.config["bench"]["repeats"]
    with pytest.raises(Exit, match="invoke.yaml has no bench.repeats"):
        kit_settings(c)


def test_slot_counts_are_positive_integers():
    assert slot_counts("1, 2,4", "--slots") == [1, 2, 4]
    for wrong in ("", "0,2", "one"):
        with pytest.raises(Exit, match="give slot counts of 1 or more"):
            slot_counts(wrong, "--slots")


def test_a_bind_address_beyond_loopback_needs_the_explicit_opt_in():
    def shape_with(**cluster):
        c = project_context()
        c.config.cluster.update(cluster)
        return cluster_shape(c)

    assert shape_with(bind_address="127.0.0.2").bind_address == "127.0.0.2"
    with pytest.raises(Exit, match="cluster.bind_address = 0.0.0.0 would publish the UIs beyond this machine"):
        shape_with(bind_address="0.0.0.0")
    assert shape_with(bind_address="0.0.0.0", expose_beyond_loopback=True).bind_address == "0.0.0.0"
