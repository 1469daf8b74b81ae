"""HTTP download with resume, bounded retries, a checksum and a progress line."""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download that could not complete, with what was kept and what to do next."""


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_into(url: str, part: Path, timeout: float, progress: Callable[[int, int], None]) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to fetch: the part file is whole
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        remaining = int(response.headers.get("Content-Length") or 0)
        total = have + remaining if remaining else 0
        received = 0
        with open(part, "ab" if have else "wb") as handle:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                handle.write(block)
                received += len(block)
                progress(have + received, total)
        if remaining and received < remaining:
            raise http.client.IncompleteRead(b"", remaining - received)


def download(
    url: str,
    dest: Path,
    md5: str,
    retries: int = 3,
    timeout: float = 30.0,
    progress: Callable[[int, int], None] = lambda done, total: None,
    backoff: float = 1.0,
) -> Path:
    """Fetch url to dest, resuming a partial download; dest appears only once its md5 matches."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            _fetch_into(url, part, timeout, progress)
            break
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            if attempt == retries:
                kept = f"; {part} is kept and the next try resumes it" if part.exists() else ""
                raise DownloadError(f"downloading {url} failed after {retries} attempts: {error}{kept}") from error
            time.sleep(backoff * attempt)
    actual = file_md5(part)
    if actual != md5:
        part.unlink()
        raise DownloadError(
            f"{url}: checksum mismatch (md5 {actual}, expected {md5}); the download was "
            "removed. Try again, or check data.url and data.md5"
        )
    os.replace(part, dest)
    return dest
