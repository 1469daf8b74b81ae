import xml.etree.ElementTree as ET

import pytest

from images.common.render_config import ConfigError, collect, render_all, render_properties


def parse_site(path):
    root = ET.parse(path).getroot()
    return {p.findtext("name"): p.findtext("value") for p in root.iter("property")}


def test_groups_entries_by_lower_cased_file_and_ignores_other_variables():
    files = collect(
        {
            "HDFS-SITE.XML_dfs.replication": "2",
            "CORE-SITE.XML_fs.defaultFS": "hdfs://namenode:8020",
            "SPARK-DEFAULTS.CONF_spark.task.cpus": "2",
            "PATH": "/usr/bin",
            "HOME.XML": "no key, not a config entry",
        }
    )
    assert files == {
        "hdfs-site.xml": {"dfs.replication": "2"},
        "core-site.xml": {"fs.defaultFS": "hdfs://namenode:8020"},
        "spark-defaults.conf": {"spark.task.cpus": "2"},
    }


def test_keys_keep_their_underscores_and_case():
    assert collect({"CORE-SITE.XML_a_b.C_d": "x"}) == {"core-site.xml": {"a_b.C_d": "x"}}


def test_xml_values_with_markup_characters_round_trip_exactly(tmp_path):
    tricky = "a<b & c>d \"quoted\" 'single' ]]> <!-- not a comment -->"
    render_all(str(tmp_path), {"HDFS-SITE.XML_weird.key": tricky, "HDFS-SITE.XML_dfs.replication": "2"})
    assert parse_site(tmp_path / "hdfs-site.xml") == {"weird.key": tricky, "dfs.replication": "2"}


def test_control_characters_are_refused_with_the_key_named(tmp_path):
    with pytest.raises(ConfigError, match="hdfs-site.xml bad.key"):
        render_all(str(tmp_path), {"HDFS-SITE.XML_bad.key": "bell\x07"})
    assert list(tmp_path.iterdir()) == []


def test_rendering_twice_rewrites_the_file_instead_of_appending(tmp_path):
    env = {"HDFS-SITE.XML_dfs.replication": "2"}
    render_all(str(tmp_path), env)
    render_all(str(tmp_path), {"HDFS-SITE.XML_dfs.replication": "3"})
    assert parse_site(tmp_path / "hdfs-site.xml") == {"dfs.replication": "3"}
    assert [p.name for p in tmp_path.iterdir()] == ["hdfs-site.xml"]


def java_properties_value(line):
    """The decoding java.util.Properties applies to a simple `key=value` line."""
    key, _, value = line.partition("=")
    out, chars = [], iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars)
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(escaped, escaped))
        else:
            out.append(char)
    return key, "".join(out)


def test_properties_escape_backslashes_newlines_and_a_leading_separator():
    text = render_properties({"spark.driver.extraJavaOptions": "=-Dx=C:\\tmp\nnext"})
    line = text.splitlines()[1]
    assert "\n" not in line.split("=", 1)[1]
    assert java_properties_value(line) == ("spark.driver.extraJavaOptions", "=-Dx=C:\\tmp\nnext")
