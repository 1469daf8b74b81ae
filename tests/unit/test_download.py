"""The real download code against a local HTTP server on 127.0.0.1 serving a generated tarball."""

import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from cli.download import DownloadError, download


def tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        payload = bytes(range(256)) * 4000
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


class Server:
    """Serves one body with Range support; the first `cut` responses stop after half the bytes."""

    def __init__(self, body: bytes, cut: int = 0):
        self.body, self.cut, self.requests = body, cut, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                server.requests.append(start)
                chunk = server.body[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if server.cut > 0:
                    server.cut -= 1
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-10-binary.tar.gz"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


BODY = tarball()
MD5 = hashlib.md5(BODY).hexdigest()


def test_a_download_with_the_right_checksum_lands_and_reports_progress(tmp_path):
    seen = []
    with Server(BODY) as server:
        path = download(server.url, tmp_path / "c.tar.gz", MD5, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == BODY
    assert seen[-1] == (len(BODY), len(BODY))
    assert list(tmp_path.iterdir()) == [path]


def test_a_checksum_mismatch_is_a_clear_error_and_leaves_no_file(tmp_path):
    with Server(BODY) as server, pytest.raises(DownloadError, match="checksum mismatch .* removed"):
        download(server.url, tmp_path / "c.tar.gz", "0" * 32, backoff=0)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_is_resumed_from_where_it_stopped(tmp_path):
    with Server(BODY, cut=1) as server:
        path = download(server.url, tmp_path / "c.tar.gz", MD5, retries=3, backoff=0)
        requests = server.requests
    assert path.read_bytes() == BODY
    assert requests[0] == 0 and requests[1] == len(BODY) // 2  # the second request asked for the rest only


def test_giving_up_after_the_retries_keeps_the_partial_file_for_next_time(tmp_path):
    with Server(BODY, cut=5) as server, pytest.raises(DownloadError, match="after 2 attempts.*kept"):
        download(server.url, tmp_path / "c.tar.gz", MD5, retries=2, backoff=0)
    assert [p.name for p in tmp_path.iterdir()] == ["c.tar.gz.part"]


def test_a_truncated_or_stale_batch_file_is_found_before_it_is_staged(tmp_path):
    from invoke import Exit

    from cli.data import SYNTHETIC_MARKER, ensure_dataset
    from jobs.lib.cifar import FOLDER
    from jobs.synthetic_cifar import write_dataset
    from tests.unit.shapes import project_context

    c = project_context()
    c.config.data.dir = str(tmp_path)
    write_dataset(tmp_path, train_per_batch=10, test_records=10, seed=0)
    folder = tmp_path / FOLDER
    (folder / SYNTHETIC_MARKER).write_text('{"train_per_batch": 10, "test_records": 10, "seed": 0, "difficulty": "easy"}')
    assert ensure_dataset(c) == folder.resolve()
    with open(folder / "data_batch_3.bin", "r+b") as handle:
        handle.truncate(3073 * 7 + 100)  # killed mid-extraction
    with pytest.raises(Exit, match=r"data_batch_3.bin is 21611 bytes, not 30730 \(10 records of 3073\).*--force"):
        ensure_dataset(c)
