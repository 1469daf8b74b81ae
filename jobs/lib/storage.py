"""One small file API over HDFS (hdfs-native) and a local folder, chosen by the URL.

Jobs take their storage root as an argument (``hdfs://namenode:8020/data`` on the cluster, a
local path for the embedded master), so the same code runs on both. TensorFlow 2.16 has no
HDFS filesystem of its own; hdfs-native talks to the namenode directly, no libhdfs needed.
"""

from __future__ import annotations

import collections
import io
import itertools
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

WRITES = collections.Counter()  # changes this process made to storage, by operation (the chief-only proof)
RETRY_SECONDS = 120.0  # past the 20 s after which the namenode declares a silent datanode dead
# past the namenode's 4 s stale window (cluster/topology.py STALE_DATANODE_MS): a retry sooner may
# be sent through the datanode that just failed again, and wait out DATANODE_TIMEOUT_MS
FIRST_RETRY_SECONDS = 5.0
# hdfs-native's connect and read timeout toward a datanode (dfs.client.socket-timeout, 60 s by
# default): a datanode that vanished answers nothing, and a write routed through it waited 53 s
# for "No route to host". Nothing here pauses mid-write; a live datanode answers in far less.
DATANODE_TIMEOUT_MS = 10_000
DEGRADED_SECONDS = 30.0  # after a failed write: past the namenode's 20 s to declare a datanode dead


@dataclass(frozen=True)
class Entry:
    path: str
    is_dir: bool
    length: int


class LocalStorage:
    def __init__(self, root: str):
        self.root = root

    def read_bytes(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def write_bytes(self, path: str, data: bytes) -> None:
        WRITES["write"] += 1
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    def replace_bytes(self, path: str, data: bytes) -> None:
        """Written beside, then renamed over: a writer killed midway leaves the old file whole."""
        partial = f"{path}.{uuid.uuid4().hex}.partial"
        self.write_bytes(partial, data)
        WRITES["rename"] += 1
        os.replace(partial, path)

    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def makedirs(self, path: str) -> None:
        WRITES["mkdir"] += 1
        Path(path).mkdir(parents=True, exist_ok=True)

    def listdir(self, path: str) -> list[Entry]:
        return sorted(
            (Entry(str(p), p.is_dir(), 0 if p.is_dir() else p.stat().st_size) for p in Path(path).iterdir()),
            key=lambda e: e.path,
        )

    def rename(self, source: str, target: str) -> None:
        WRITES["rename"] += 1
        if Path(target).exists():
            raise FileExistsError(target)
        os.rename(source, target)

    def delete(self, path: str) -> None:
        WRITES["delete"] += 1
        if Path(path).is_dir():
            shutil.rmtree(path)
        elif Path(path).exists():
            Path(path).unlink()

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)


class HdfsStorage:
    def __init__(self, root: str):
        from hdfs_native import Client

        parsed = urlparse(root)
        self.root = root
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self.client = Client(self.base, config={"dfs.client.socket-timeout": str(DATANODE_TIMEOUT_MS)})
        self.degraded_until = 0.0  # after a failed write, writes take one replica first until then
        self.replication = None  # the replication the namenode gives files, once a failed attempt showed it

    def _path(self, path: str) -> str:
        return urlparse(path).path if path.startswith("hdfs://") else path

    def read_bytes(self, path: str) -> bytes:
        def read():
            with self.client.read(self._path(path)) as reader:
                return reader.read()

        return with_retries(read, f"read {path}")

    def write_bytes(self, path: str, data: bytes) -> None:
        WRITES["write"] += 1
        from hdfs_native import WriteOptions

        target = self._path(path)
        attempts = itertools.count()

        def write() -> int | None:  # a whole-file overwrite, so a retry after a broken pipeline starts clean
            # any failure turns it on: with as many datanodes as replicas (the kit's two and two),
            # one replica is all a lost datanode leaves anyway
            if next(attempts):
                self.replication = self.replication or self._replication(target)
                self.degraded_until = time.monotonic() + DEGRADED_SECONDS
            # With two datanodes the namenode still routes a new block through a stale one (it
            # falls back when too few fresh ones are left) until it declares it dead, 20 s on.
            # Meanwhile a write asks for one replica, which a fresh datanode takes, then for the
            # file's own: the namenode adds the others when it can.
            single = self.replication if time.monotonic() < self.degraded_until else None
            options = WriteOptions(overwrite=True, create_parent=True, replication=1 if single else None)
            writer = self.client.create(target, options)
            try:
                writer.write(data)  # a failed pipeline raises here: closing it would only retry `complete` for 15 s
                writer.close()
            finally:
                # FileWriter.close() leaves io's own flag unset, so io's finaliser would close a
                # failed writer again when it is collected, blocking for another 15 s
                io.RawIOBase.close(writer)
            return single  # the replication to give it back, apart: a failure there rewrites no data

        replication = with_retries(write, f"write {path}")
        if replication:
            with_retries(lambda: self._set_replication(target, replication), f"set the replication of {path}")

    def _set_replication(self, path: str, replication: int) -> None:
        if not self.client.set_replication(path, replication):
            raise OSError(f"the namenode did not set {path}'s replication to {replication}")

    def _replication(self, path: str) -> int | None:
        """The replication the namenode gave a file a failed attempt created (None when there is none)."""
        try:
            status = self.client.get_file_info(path)
        except Exception:  # the attempt failed before the namenode created it
            return None
        return status.replication if (status.replication or 0) > 1 else None

    def replace_bytes(self, path: str, data: bytes) -> None:
        """Written beside, then renamed over (one namenode operation): a writer killed midway
        leaves the old file whole, never a torn one."""
        partial = f"{path}.{uuid.uuid4().hex}.partial"
        self.write_bytes(partial, data)
        WRITES["rename"] += 1
        with_retries(lambda: self.client.rename(self._path(partial), self._path(path), overwrite=True), f"rename {partial}")

    def exists(self, path: str) -> bool:
        try:
            self.client.get_file_info(self._path(path))
            return True
        except FileNotFoundError:
            return False

    def makedirs(self, path: str) -> None:
        WRITES["mkdir"] += 1
        self.client.mkdirs(self._path(path), create_parent=True)

    def listdir(self, path: str) -> list[Entry]:
        return sorted(
            (Entry(self.base + s.path, s.isdir, s.length) for s in self.client.list_status(self._path(path))),
            key=lambda e: e.path,
        )

    def rename(self, source: str, target: str) -> None:
        WRITES["rename"] += 1
        # HDFS renames a folder atomically: readers see the old name or the whole new folder.
        self.client.rename(self._path(source), self._path(target))

    def delete(self, path: str) -> None:
        WRITES["delete"] += 1
        if self.exists(path):
            self.client.delete(self._path(path), recursive=True)

    def join(self, *parts: str) -> str:
        return "/".join(p.rstrip("/") for p in parts)


def with_retries(operation, what: str, seconds: float = RETRY_SECONDS):
    """Retries an HDFS read or write for a bounded time while a lost datanode is being avoided.

    The namenode marks a silent datanode stale after 4 s and then stops handing it out for reads
    and for a block of one replica; until then an operation may be routed to it, so the first
    retry waits that out. Missing files and permissions are not retried.
    """
    deadline = time.monotonic() + seconds
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            return operation()
        except (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError):
            raise
        except Exception as error:
            if time.monotonic() + delay > deadline:
                raise
            print(
                f"storage: {what} failed ({str(error).splitlines()[0][:200] if str(error) else type(error).__name__}); "
                f"retrying in {delay:.0f}s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)  # bounded by the deadline above
            delay = min(delay * 2, 8.0)


def upload_folder(storage, folder: str, url: str) -> int:
    """Every file under a local folder to url/<its relative path>; returns how many."""
    files = [path for path in sorted(Path(folder).rglob("*")) if path.is_file()]
    for path in files:
        storage.write_bytes(storage.join(url, *path.relative_to(folder).parts), path.read_bytes())
    return len(files)


def download_folder(storage, url: str, folder: str) -> int:
    """Every file under a storage folder into a local one, keeping the layout; returns how many."""
    count = 0
    for entry in storage.listdir(url):
        target = os.path.join(folder, entry.path.rstrip("/").rsplit("/", 1)[-1])
        if entry.is_dir:
            count += download_folder(storage, entry.path, target)
        else:
            os.makedirs(folder, exist_ok=True)
            Path(target).write_bytes(storage.read_bytes(entry.path))
            count += 1
    return count


def open_storage(root: str):
    """HdfsStorage for hdfs:// roots, LocalStorage for paths and file:// URLs."""
    scheme = urlparse(root).scheme
    if scheme == "hdfs":
        return HdfsStorage(root)
    if scheme in ("", "file"):
        return LocalStorage(urlparse(root).path if scheme == "file" else root)
    raise ValueError(f"unsupported storage root {root!r}: use hdfs://host:port/path or a local path")
