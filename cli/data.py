"""data.*: get CIFAR-10 onto this machine (download, a local tarball, or a synthetic stand-in)."""

from __future__ import annotations

import json
import shutil
import tarfile
import urllib.request
from pathlib import Path

from invoke import Exit, task

from cli.download import DownloadError, download, file_md5
from cli.flags import one_of
from cli.progress import LiveLine, say
from cli.settings import kit_settings
from jobs.lib.cifar import FOLDER, RECORD_BYTES, TEST_FILES, TRAIN_FILES
from jobs.synthetic_cifar import DIFFICULTIES, write_dataset

SYNTHETIC_MARKER = "SYNTHETIC.json"


def dataset_dir(c) -> Path:
    return Path(kit_settings(c).data.dir).resolve() / FOLDER


def synthetic_spec(folder: Path) -> dict:
    """What the synthetic stand-in in folder was generated with; {} for real CIFAR-10 (or nothing)."""
    marker = folder / SYNTHETIC_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {}


def expected_records(folder: Path) -> dict[str, int]:
    """Records each batch file must hold: the official 10,000, or what the synthetic stand-in was made with."""
    spec = synthetic_spec(folder)
    train, test = (spec["train_per_batch"], spec["test_records"]) if spec else (10000, 10000)
    return {**{name: train for name in TRAIN_FILES}, **{name: test for name in TEST_FILES}}


def dataset_problem(folder: Path) -> str | None:
    """One line on a batch file whose size is wrong (a truncated or stale extraction), or None."""
    for name, records in expected_records(folder).items():
        size = (folder / name).stat().st_size
        if size != records * RECORD_BYTES:
            return (
                f"{folder / name} is {size} bytes, not {records * RECORD_BYTES} ({records} records of {RECORD_BYTES}): "
                "a truncated or stale copy; './kit data.fetch --force' (with --from or --synthetic as before) gets it again"
            )
    return None


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in TRAIN_FILES + TEST_FILES)


def extract(tarball: Path, data_dir: Path) -> None:
    try:
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(f"{FOLDER}/")]
            if not members:
                raise Exit(f"kit: {tarball} holds no {FOLDER}/ folder: is it the CIFAR-10 binary version?")
            archive.extractall(data_dir, members=members, filter="data")
    except tarfile.TarError as error:
        raise Exit(f"kit: {tarball} is not a readable tar.gz ({error})") from error


LOCAL_BYTES_NEEDED = 400 * 10**6  # the 163 MB archive and the 185 MB of batch files it unpacks to


def ensure_dataset(c, from_=None, synthetic=False, force=False, train_per_batch=None, test_records=None, difficulty=None):
    """The CIFAR-10 batch files in data.dir, got the way asked; returns their folder."""
    settings = kit_settings(c).data
    data_dir = Path(settings.dir).resolve()
    folder = data_dir / FOLDER
    difficulty = difficulty or settings.synthetic_difficulty
    one_of(difficulty, "--difficulty", DIFFICULTIES)
    spec = synthetic_spec(folder)
    if synthetic and is_complete(folder) and not force and spec and spec.get("difficulty", "easy") != difficulty:
        say(f"the synthetic stand-in in {folder} is not of difficulty {difficulty}: writing it again")
        force = True  # a stand-in only: real CIFAR-10 is replaced only with --force
    if is_complete(folder) and not force:
        problem = dataset_problem(folder)
        if problem:
            raise Exit(f"kit: {problem}")
        kind = "synthetic" if (folder / SYNTHETIC_MARKER).exists() else "CIFAR-10"
        say(f"{kind} batch files already in {folder} (--force fetches again)")
        return folder
    data_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(data_dir).free
    if free < LOCAL_BYTES_NEEDED:
        raise Exit(
            f"kit: {data_dir} has {free / 1e6:.0f} MB free; CIFAR-10 needs about {LOCAL_BYTES_NEEDED / 1e6:.0f} MB "
            "(archive and batch files): free some space or point data.dir elsewhere"
        )
    if synthetic:
        per_batch = int(train_per_batch or settings.synthetic_train_per_batch)
        tests = int(test_records or settings.synthetic_test_records)
        say(
            f"writing a synthetic CIFAR-10 ({5 * per_batch} train + {tests} test records) to {folder}; "
            "accuracy figures on it are not comparable with published CIFAR-10 results"
        )
        write_dataset(data_dir, per_batch, tests, int(settings.synthetic_seed), difficulty=difficulty)
        (folder / SYNTHETIC_MARKER).write_text(
            json.dumps(
                {
                    "train_per_batch": per_batch,
                    "test_records": tests,
                    "seed": int(settings.synthetic_seed),
                    "difficulty": difficulty,
                }
            )
        )
        return folder
    if from_:
        source = Path(from_).expanduser()
        if not source.is_file():
            raise Exit(f"kit: --from {from_}: no such file; give the path of cifar-10-binary.tar.gz")
        actual = file_md5(source)
        if actual != settings.md5:
            raise Exit(
                f"kit: {source} has md5 {actual}, not the official {settings.md5}: use the original cifar-10-binary.tar.gz"
            )
        tarball = source
    else:
        line = LiveLine("kit: download")
        tarball = data_dir / "cifar-10-binary.tar.gz"
        try:
            download(
                settings.url,
                tarball,
                settings.md5,
                retries=int(settings.retries),
                progress=lambda done, total: line.update(
                    f"{done / 1e6:.1f} MB" + (f" of {total / 1e6:.1f} MB" if total else "")
                ),
            )
        except DownloadError as error:
            line.done("failed")
            raise Exit(
                f"kit: {error}\nOffline? Use '--from PATH' with a tarball you have, or "
                "'--synthetic' for a generated stand-in in the same format."
            ) from error
        line.done(f"{tarball} verified")
    (folder / SYNTHETIC_MARKER).unlink(missing_ok=True)
    extract(tarball, data_dir)
    if not is_complete(folder):
        raise Exit(f"kit: {tarball} did not contain every batch file ({', '.join(TRAIN_FILES + TEST_FILES)})")
    problem = dataset_problem(folder)
    if problem:
        raise Exit(f"kit: {problem}")
    say(f"CIFAR-10 batch files ready in {folder}")
    return folder


def reachable(url: str, timeout: float = 10.0) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except Exception:
        return False


def default_dataset(c, from_=None) -> Path:
    """Real CIFAR-10 when given or reachable, otherwise the full-size synthetic stand-in, said plainly."""
    folder = Path(kit_settings(c).data.dir).resolve() / FOLDER
    if from_ or is_complete(folder):
        return ensure_dataset(c, from_=from_)
    if reachable(kit_settings(c).data.url):
        return ensure_dataset(c)
    say(
        f"CIFAR-10 is not reachable at {kit_settings(c).data.url}: using the synthetic stand-in. Its accuracy "
        "figures are NOT comparable with published CIFAR-10 results (give the real archive with --from)"
    )
    return ensure_dataset(c, synthetic=True)


@task(
    name="fetch",
    help={
        "from_": "a cifar-10-binary.tar.gz already on disk (offline machines)",
        "synthetic": "generate a stand-in in the same format instead (no download)",
        "train_per_batch": "synthetic: records per training batch file (default data.synthetic_train_per_batch)",
        "test_records": "synthetic: records in the test batch (default data.synthetic_test_records)",
        "difficulty": "synthetic: easy (learnt in an epoch) or hard (CIFAR-like accuracy; default data.synthetic_difficulty)",
        "force": "fetch again even when the files are present",
    },
)
def fetch(c, from_=None, synthetic=False, train_per_batch=None, test_records=None, difficulty=None, force=False):
    """Get CIFAR-10 (binary version) into data.dir: download with checksum, --from a tarball, or --synthetic."""
    ensure_dataset(c, from_, synthetic, force, train_per_batch, test_records, difficulty)
