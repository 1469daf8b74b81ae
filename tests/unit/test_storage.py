"""The storage layer tallies every change it makes, the evidence behind the chief-only claim."""

from jobs.lib import storage
from jobs.lib.storage import open_storage


def test_every_change_to_storage_is_tallied_and_reads_are_not(tmp_path):
    store = open_storage(str(tmp_path))
    storage.WRITES.clear()
    store.write_bytes(str(tmp_path / "a" / "x.json"), b"1")
    store.replace_bytes(str(tmp_path / "a" / "y.json"), b"2")
    store.makedirs(str(tmp_path / "b"))
    store.rename(str(tmp_path / "b"), str(tmp_path / "c"))
    assert store.read_bytes(str(tmp_path / "a" / "x.json")) == b"1" and store.exists(str(tmp_path / "c"))
    store.listdir(str(tmp_path / "a"))
    store.delete(str(tmp_path / "c"))
    assert storage.WRITES == {"write": 2, "rename": 2, "mkdir": 1, "delete": 1}


def test_a_folder_goes_up_and_comes_back_with_its_layout(tmp_path):
    trace = tmp_path / "trace" / "plugins" / "profile" / "2026_11_23"
    trace.mkdir(parents=True)
    (trace / "host.xplane.pb").write_bytes(b"\x00\x01" * 100)
    (tmp_path / "trace" / "events.out").write_text("x")
    runs = open_storage(str(tmp_path / "runs"))
    assert storage.upload_folder(runs, str(tmp_path / "trace"), str(tmp_path / "runs" / "profile")) == 2
    assert storage.download_folder(runs, str(tmp_path / "runs" / "profile"), str(tmp_path / "back")) == 2
    assert (tmp_path / "back" / "plugins" / "profile" / "2026_11_23" / "host.xplane.pb").read_bytes() == b"\x00\x01" * 100
    assert (tmp_path / "back" / "events.out").read_text() == "x"
