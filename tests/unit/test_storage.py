"""The storage layer tallies every change it makes, the evidence behind the chief-only claim."""

import io
import types

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


class FakeWriter(io.RawIOBase):
    def __init__(self, client, fail: bool):
        self.client, self.fail = client, fail

    def write(self, data):
        if self.fail:
            raise OSError("No data received for 10000ms")
        return len(data)

    def close(self):  # as hdfs-native's: io's own flag stays unset
        self.client.closes += 1


class FakeHdfs:
    """Creates fail while `failing` lasts; files keep the replication the namenode gave them."""

    def __init__(self, failing: int, replication_refused: int = 0):
        self.failing, self.closes, self.created, self.files = failing, 0, [], {}
        self.replication_refused, self.writers = replication_refused, []

    def create(self, path, options):
        self.created.append((path, options.replication))
        self.files[path] = options.replication or 2
        self.failing -= 1
        self.writers.append(FakeWriter(self, fail=self.failing >= 0))
        return self.writers[-1]

    def get_file_info(self, path):
        return types.SimpleNamespace(replication=self.files[path])

    def set_replication(self, path, replication):
        self.replication_refused -= 1
        if self.replication_refused >= 0:
            return False
        self.files[path] = replication
        return True


def storage_over(fake: FakeHdfs, monkeypatch) -> storage.HdfsStorage:
    """An HdfsStorage on a fake client, its retries without waiting."""
    monkeypatch.setattr(storage.time, "sleep", lambda seconds: None)
    hdfs = object.__new__(storage.HdfsStorage)
    hdfs.base, hdfs.degraded_until, hdfs.replication, hdfs.client = "hdfs://namenode:8020", 0.0, None, fake
    return hdfs


def test_after_a_failed_write_writes_take_one_replica_then_their_own_until_the_datanode_is_declared_dead(monkeypatch):
    # with two datanodes the namenode routes new blocks through a lost one until it is dead: a
    # retry on one replica lands on the live one, and the file gets its replication back
    hdfs = storage_over(fake := FakeHdfs(failing=1), monkeypatch)
    hdfs.write_bytes("hdfs://namenode:8020/runs/a", b"x")
    hdfs.write_bytes("hdfs://namenode:8020/runs/b", b"y")  # within the window: one replica first too
    assert fake.created == [("/runs/a", None), ("/runs/a", 1), ("/runs/b", 1)]
    assert fake.files == {"/runs/a": 2, "/runs/b": 2}
    assert fake.closes == 2  # the failed writer is never closed: that only retries `complete` for 15 s
    assert all(writer.closed for writer in fake.writers)  # so io's finaliser does not close it either
    hdfs.degraded_until = 0.0  # the window over: the namenode's own replication again
    hdfs.write_bytes("hdfs://namenode:8020/runs/c", b"z")
    assert fake.created[-1] == ("/runs/c", None)


def test_a_replication_the_namenode_refuses_to_restore_is_asked_again_without_rewriting_the_data(monkeypatch):
    hdfs = storage_over(fake := FakeHdfs(failing=1, replication_refused=1), monkeypatch)
    hdfs.write_bytes("hdfs://namenode:8020/runs/a", b"x")
    assert fake.created == [("/runs/a", None), ("/runs/a", 1)] and fake.files == {"/runs/a": 2}
