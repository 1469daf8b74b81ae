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
