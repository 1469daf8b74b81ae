"""Build the kit's images with the docker SDK: base, then hadoop and spark on top of it, side by side.

Versions live in one place each (the Dockerfiles' ARGs, images/spark/requirements.txt) and
are read from there into the image tags, so a tag always says what is inside.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import docker
import docker.errors

IMAGES_DIR = Path(__file__).resolve().parent
PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
DEBOOTSTRAP_TAG = "bookworm-debootstrap"
# Each image is labelled with a digest of the sources it was built from, so a task can tell an
# image that is current from one whose Dockerfile, scripts or pins changed since.
SOURCE_LABEL = "dlkit.source-digest"


class BuildError(RuntimeError):
    """A build that failed, with what to do next in its message."""


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    name: str  # folder under images/
    tag: str  # full reference, versions included
    buildargs: dict


def dockerfile_arg(image: str, arg: str) -> str:
    text = (IMAGES_DIR / image / "Dockerfile").read_text()
    match = re.search(rf"^ARG {arg}=(\S+)$", text, re.M)
    if not match:
        raise BuildError(f"images/{image}/Dockerfile has no pinned 'ARG {arg}=...'")
    return match.group(1)


def requirement_pins(path: Path = IMAGES_DIR / "spark" / "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def image_specs(prefix: str, debian_image: str) -> list[ImageSpec]:
    """The three images in build order; each tag names the versions it carries."""
    base = f"{prefix}-base:bookworm-java17"
    pins = requirement_pins()
    return [
        ImageSpec("base", base, {"DEBIAN_IMAGE": debian_image}),
        ImageSpec("hadoop", f"{prefix}-hadoop:{dockerfile_arg('hadoop', 'HADOOP_VERSION')}", {"BASE_IMAGE": base}),
        ImageSpec("spark", f"{prefix}-spark:{pins['pyspark']}-tf{pins['tensorflow']}", {"BASE_IMAGE": base}),
    ]


# Where distributions keep the system's trusted CAs, in the order they are tried.
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora, CentOS
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # RHEL's extracted bundle
    "/etc/ssl/cert.pem",  # Alpine, macOS
)


def resolve_ca_bundle(
    setting: str, environ=os.environ, candidates: tuple[str, ...] = SYSTEM_CA_BUNDLES
) -> tuple[str | None, str]:
    """The PEM bundle the builds trust, and where it came from.

    'auto' means what the host trusts: SSL_CERT_FILE or REQUESTS_CA_BUNDLE when set, else the
    system bundle. '' means none; anything else is a path.
    """
    if setting != "auto":
        return (setting or None), ("images.extra_ca_bundle" if setting else "none (images.extra_ca_bundle='')")
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if environ.get(variable) and Path(environ[variable]).is_file():
            return environ[variable], variable
    for candidate in candidates:
        if Path(candidate).is_file():
            return candidate, "the host's system bundle"
    return None, "none (no system CA bundle found on the host)"


def source_digest(spec: ImageSpec) -> str:
    """sha256 over the files an image is built from: its folder, common/ and base/ (every image sits on base)."""
    digest = hashlib.sha256()
    for folder in sorted({spec.name, "common", "base"}):
        for path in sorted((IMAGES_DIR / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(IMAGES_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def image_state(client: docker.DockerClient, spec: ImageSpec) -> str:
    """'missing', 'stale' (built from other sources than today's) or 'current'."""
    try:
        image = client.images.get(spec.tag)
    except docker.errors.ImageNotFound:
        return "missing"
    built_from = (image.attrs.get("Config") or {}).get("Labels") or {}
    return "current" if built_from.get(SOURCE_LABEL) == source_digest(spec) else "stale"


def split_pem_bundle(text: str) -> list[str]:
    """One certificate per file: update-ca-certificates and Java's cacerts hook want that."""
    return [block + "\n" for block in PEM_BLOCK.findall(text)]


def build_context(image: str, extra_ca_bundle: str | None) -> io.BytesIO:
    """A tar of images/<image>/, images/common/ and extra-ca/*.crt, as the Dockerfiles expect."""
    certificates = []
    if extra_ca_bundle:
        path = Path(extra_ca_bundle).expanduser()
        if not path.is_file():
            raise BuildError(
                f"images.extra_ca_bundle={extra_ca_bundle} is not a file: point it at a PEM bundle, or set it to '' for none"
            )
        certificates = split_pem_bundle(path.read_text(errors="replace"))
        if not certificates:
            raise BuildError(f"{extra_ca_bundle} holds no PEM certificate ('-----BEGIN CERTIFICATE-----' blocks)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in (image, "common"):
            tar.add(IMAGES_DIR / folder, arcname=folder, filter=lambda info: None if "__pycache__" in info.name else info)
        tar.addfile(_dir_info("extra-ca"))
        for index, pem in enumerate(certificates):
            data = pem.encode()
            info = tarfile.TarInfo(f"extra-ca/extra-{index:03d}.crt")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def image_exists(client: docker.DockerClient, reference: str) -> bool:
    try:
        client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False


def resolve_debian_base(
    client: docker.DockerClient, debian_image: str, mirror: str, prefix: str, say: Callable[[str], None]
) -> str:
    """debian_image when present or pullable, else a local bookworm built with debootstrap."""
    if image_exists(client, debian_image):
        say(f"base: using {debian_image} (already present)")
        return debian_image
    try:
        client.images.pull(debian_image)
        say(f"base: using {debian_image} (pulled from the registry)")
        return debian_image
    except docker.errors.APIError as error:
        reason = str(error.explanation or error).splitlines()[0][:120]
    local = f"{prefix}-debian:{DEBOOTSTRAP_TAG}"
    if image_exists(client, local):
        say(f"base: {debian_image} cannot be pulled ({reason}); using the local {local}")
        return local
    say(f"base: {debian_image} cannot be pulled ({reason}); building {local} with debootstrap")
    debootstrap_image(client, local, mirror)
    return local


def debootstrap_image(client: docker.DockerClient, reference: str, mirror: str) -> None:
    if os.geteuid() != 0:
        raise BuildError(
            "no registry answers and building a local base with debootstrap needs "
            "root: run as root once, or set images.debian_image to an image you have"
        )
    if not shutil.which("debootstrap"):
        if not shutil.which("apt-get"):
            raise BuildError(
                "no registry answers and debootstrap is not installed: install it, "
                "or set images.debian_image to an image you have"
            )
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "debootstrap"]):
            done = subprocess.run(
                command, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            )
            if done.returncode:
                raise BuildError(f"'{' '.join(command)}' failed, so debootstrap could not be installed:\n{done.stderr[-1500:]}")
    with tempfile.TemporaryDirectory(prefix="dlkit-rootfs-", dir="/var/tmp") as work:
        rootfs = Path(work) / "rootfs"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror], capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise BuildError(f"debootstrap from {mirror} failed; check images.debian_mirror:\n{tail}")
        archive = Path(work) / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        repository, tag = reference.rsplit(":", 1)
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag)


TLS_FAILURES = (
    "PKIX path building failed",
    "CERTIFICATE_VERIFY_FAILED",
    "certificate verify failed",
    "SSLCertVerificationError",
    "server certificate verification failed",
    "invalid peer certificate",  # uv (rustls)
)


def certificate_hint(build_log: str, extra_ca_bundle: str | None) -> str:
    """The next step when a download inside the build did not trust the server's certificate."""
    if not any(marker in build_log for marker in TLS_FAILURES):
        return ""
    now = f" (now: {extra_ca_bundle})" if extra_ca_bundle else " (now: none)"
    return (
        "\nHTTPS inside the build did not trust the server's certificate: a proxy with its own CA? "
        "Set images.extra_ca_bundle to a PEM bundle that includes it"
        + now
        + " (default 'auto': the host's own bundle), e.g. INVOKE_IMAGES_EXTRA_CA_BUNDLE=/path/to/bundle.pem"
    )


def build_image(
    client: docker.DockerClient,
    spec: ImageSpec,
    extra_ca_bundle: str | None,
    log_path: Path,
    on_step: Callable[[str, str], None],
) -> str:
    """Build one image with the layer cache; the full log goes to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    context = build_context(spec.name, extra_ca_bundle)
    step = "starting"
    with open(log_path, "w", encoding="utf-8") as log:
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=f"{spec.name}/Dockerfile",
            tag=spec.tag,
            buildargs=spec.buildargs,
            labels={SOURCE_LABEL: source_digest(spec)},
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                log.write(chunk["error"] + "\n")
                log.flush()
                text = log_path.read_text()
                tail = "\n".join(text.splitlines()[-25:])
                raise BuildError(
                    f"building {spec.tag} failed (full log: {log_path}):\n{tail}" + certificate_hint(text, extra_ca_bundle)
                )
            text = chunk.get("stream", "")
            if text:
                log.write(text)
                for line in output_lines(text):
                    if line.startswith("Step "):
                        step = line[:100]
                        on_step(step, "")
                    else:
                        on_step(step, line[:100])
    return spec.tag


def build_side_by_side(
    client: docker.DockerClient,
    specs: list[ImageSpec],
    extra_ca_bundle: str | None,
    log_dir: Path,
    on_step: Callable[[str, str], None],
) -> dict[str, float]:
    """Build images that share only their base at once; seconds per image.

    Their builds mostly wait on downloads (hadoop's Maven jars, spark's wheels), so together they
    take little longer than the longer one. on_step(phase, detail) gets every image's current step
    in phase and the latest output line, named by its image, in detail. When one fails the others
    finish first, then every failure is raised in one BuildError. On Ctrl-C the builds are left."""
    steps = {spec.name: "starting" for spec in specs}
    seconds: dict[str, float] = {}
    failures: list[BuildError] = []
    lock, stopping = threading.Lock(), threading.Event()

    def show(name: str, state: str, detail: str = "") -> None:
        with lock:
            steps[name] = state
            on_step(", ".join(f"{image} {now}" for image, now in steps.items()), f"{name}: {detail}" if detail else "")

    def build(spec: ImageSpec) -> None:
        started = time.monotonic()

        def step(phase: str, detail: str) -> None:
            if stopping.is_set():  # Ctrl-C: leaving the stream closes it, and dockerd cancels the build
                raise BuildStopped(spec.tag)
            show(spec.name, phase.split(" : ")[0], detail)  # "Step 5/12"

        try:
            build_image(client, spec, extra_ca_bundle, log_dir / f"{spec.name}.log", step)
        except BuildStopped:
            return
        except Exception as error:  # raised on the caller's thread below, with the image it stopped
            failures.append(error if isinstance(error, BuildError) else BuildError(f"building {spec.tag} failed: {error}"))
            show(spec.name, "failed")
            return
        seconds[spec.name] = time.monotonic() - started
        show(spec.name, "built")

    def build_then_mark(spec: ImageSpec) -> None:
        try:
            build(spec)
        finally:
            finished[spec.name].set()

    # The waits are on events, not Thread.join: on Python 3.11 a Ctrl-C inside join() makes a
    # running thread look stopped (threading's bpo-45274 handler releases the lock the live thread
    # holds), and the clean-up below would then leave without it.
    finished = {spec.name: threading.Event() for spec in specs}
    threads = {spec.name: threading.Thread(target=build_then_mark, args=(spec,), daemon=True) for spec in specs}
    starting: list[str] = []  # named before its start: a Ctrl-C inside start() may come after the thread runs
    try:
        for name, thread in threads.items():
            starting.append(name)
            thread.start()
        for done in finished.values():
            while not done.wait(0.5):  # in short waits, so the main thread still takes a Ctrl-C
                pass
    except BaseException:
        stopping.set()
        for name in starting:  # a Ctrl-C between two starts leaves the second unstarted
            finished[name].wait(5)  # each leaves at its build's next output line
        raise
    if len(failures) > 1:
        raise BuildError("\n\n".join(str(failure) for failure in failures))
    if failures:
        raise failures[0]
    return {spec.name: seconds[spec.name] for spec in specs}


class BuildStopped(Exception):
    """A build left on the caller's Ctrl-C."""


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def output_lines(text: str) -> list[str]:
    """The build's output lines worth showing: colour codes (docker paints stderr red) and blanks dropped."""
    return [line for line in (ANSI_ESCAPE.sub("", raw).strip() for raw in text.splitlines()) if line]
