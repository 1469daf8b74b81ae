import re
import tarfile
import tomllib
from pathlib import Path

import pytest

from images.build import (
    BuildError,
    build_context,
    certificate_hint,
    dockerfile_arg,
    image_specs,
    output_lines,
    requirement_pins,
    split_pem_bundle,
)

ROOT = Path(__file__).resolve().parents[2]
CERT = "-----BEGIN CERTIFICATE-----\nMIIB{}\n-----END CERTIFICATE-----"


def test_tags_carry_the_pinned_versions_and_build_on_the_chosen_debian():
    specs = image_specs("dlkit", "dlkit-debian:bookworm-debootstrap")
    assert [s.tag for s in specs] == ["dlkit-base:bookworm-java17", "dlkit-hadoop:3.4.2", "dlkit-spark:3.4.4-tf2.16.2"]
    assert specs[0].buildargs == {"DEBIAN_IMAGE": "dlkit-debian:bookworm-debootstrap"}
    assert specs[2].buildargs == {"BASE_IMAGE": "dlkit-base:bookworm-java17"}


def test_pyproject_pins_the_same_versions_as_the_spark_image():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(re.match(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups() for d in project["dependencies"])
    pins = {name.lower(): version for name, version in pins.items()}
    for name, version in requirement_pins().items():
        assert pins.get(name) == version, f"{name}: image {version}, pyproject {pins.get(name)}"


def test_a_bundle_is_split_into_one_certificate_per_file(tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("# comment\n" + CERT.format("A") + "\njunk\n" + CERT.format("B") + "\n")
    assert split_pem_bundle(bundle.read_text()) == [CERT.format("A") + "\n", CERT.format("B") + "\n"]
    with tarfile.open(fileobj=build_context("hadoop", str(bundle))) as tar:
        names = tar.getnames()
        assert tar.extractfile("extra-ca/extra-001.crt").read().decode() == CERT.format("B") + "\n"
    assert {"hadoop/Dockerfile", "hadoop/pom.xml", "common/render_config.py", "extra-ca"} <= set(names)


def test_without_a_bundle_the_context_still_has_an_empty_extra_ca_folder():
    with tarfile.open(fileobj=build_context("base", None)) as tar:
        assert [n for n in tar.getnames() if n.startswith("extra-ca")] == ["extra-ca"]


@pytest.mark.parametrize("content, message", [(None, "is not a file"), ("no pem here", "holds no PEM")])
def test_a_bad_bundle_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bundle.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BuildError, match=message):
        build_context("base", str(path))


def test_a_certificate_failure_in_a_build_points_at_the_extra_ca_bundle_setting():
    log = "[ERROR] ... (certificate_unknown) PKIX path building failed: unable to find valid certification path"
    assert "images.extra_ca_bundle" in certificate_hint(log, None)
    assert certificate_hint("E: Unable to locate package foo", None) == ""


def test_build_output_lines_lose_colour_codes_and_blanks():
    # what docker's legacy builder streams for a quiet `mvn -q` step: stderr painted red, nothing in it
    assert output_lines("\x1b[91m\x1b[0m\x1b[0m\n") == []
    assert output_lines(" Step 7/20 : RUN mvn\n\x1b[91mDownloaded jar\x1b[0m\n\n") == ["Step 7/20 : RUN mvn", "Downloaded jar"]


def test_auto_trusts_the_environments_bundle_first_then_the_systems(tmp_path):
    from images.build import resolve_ca_bundle

    system, own = tmp_path / "system.pem", tmp_path / "own.pem"
    system.write_text(CERT.format("S"))
    own.write_text(CERT.format("O"))
    assert resolve_ca_bundle("auto", {}, (str(tmp_path / "absent"), str(system))) == (str(system), "the host's system bundle")
    assert resolve_ca_bundle("auto", {"SSL_CERT_FILE": str(own)}, (str(system),)) == (str(own), "SSL_CERT_FILE")
    assert resolve_ca_bundle("auto", {"REQUESTS_CA_BUNDLE": str(tmp_path / "gone")}, (str(system),))[0] == str(system)
    assert resolve_ca_bundle("auto", {}, (str(tmp_path / "absent"),))[0] is None
    assert resolve_ca_bundle("", {"SSL_CERT_FILE": str(own)}, (str(system),))[0] is None
    assert resolve_ca_bundle(str(own), {}, ())[0] == str(own)


class FakeImages:
    def __init__(self, labels_by_tag):
        self.labels_by_tag = labels_by_tag

    def get(self, tag):
        import docker.errors

        if tag not in self.labels_by_tag:
            raise docker.errors.ImageNotFound(tag)
        return type("Image", (), {"attrs": {"Config": {"Labels": self.labels_by_tag[tag]}}})()


def test_an_image_is_missing_current_or_stale_by_the_digest_of_its_sources():
    from images.build import SOURCE_LABEL, image_state, source_digest

    spark = image_specs("dlkit", "debian:bookworm-slim")[2]
    client = type("Client", (), {})()
    client.images = FakeImages({})
    assert image_state(client, spark) == "missing"
    client.images = FakeImages({spark.tag: {SOURCE_LABEL: source_digest(spark)}})
    assert image_state(client, spark) == "current"
    client.images = FakeImages({spark.tag: {SOURCE_LABEL: "0" * 16}})
    assert image_state(client, spark) == "stale"
    client.images = FakeImages({spark.tag: None})  # built before images carried the label
    assert image_state(client, spark) == "stale"


def test_the_digest_follows_the_images_own_sources_and_the_base_it_sits_on():
    from images.build import source_digest

    base, hadoop, spark = image_specs("dlkit", "debian:bookworm-slim")
    assert len({source_digest(base), source_digest(hadoop), source_digest(spark)}) == 3
    assert source_digest(spark) == source_digest(image_specs("other", "other:tag")[2])  # names are not sources


class SlowBuilds:
    """A docker client's api.build that streams two steps per image, each a while apart."""

    def __init__(self, failing: str | None = None, pause: float = 0.3):
        self.failing, self.pause, self.running, self.most_at_once = failing, pause, 0, 0
        self.api = self

    def build(self, *, tag, **_):
        import time

        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            yield {"stream": "Step 1/2 : FROM base\n"}
            time.sleep(self.pause)
            if tag == self.failing:
                yield {"error": "The command '/bin/sh -c mvn package' returned a non-zero code: 1"}
                return
            yield {"stream": "Step 2/2 : RUN fetch\n"}
            yield {"stream": " ---> downloaded\n"}
            time.sleep(self.pause)
        finally:
            self.running -= 1


def test_hadoop_and_spark_build_at_once_and_each_step_is_shown_by_image(tmp_path):
    from images.build import build_side_by_side

    specs = image_specs("dlkit", "debian:bookworm")[1:]
    client, shown = SlowBuilds(), []
    seconds = build_side_by_side(client, specs, None, tmp_path, lambda phase, detail: shown.append((phase, detail)))
    assert client.most_at_once == 2  # both builds were under way together
    assert list(seconds) == ["hadoop", "spark"] and all(s >= 0.5 for s in seconds.values())
    assert "hadoop Step 2/2, spark Step 2/2" in [phase for phase, _ in shown]  # one line tells both steps
    assert {"hadoop: ---> downloaded", "spark: ---> downloaded"} <= {detail for _, detail in shown}
    assert "Step 2/2 : RUN fetch" in (tmp_path / "spark.log").read_text()


def test_a_failed_build_beside_another_is_raised_once_both_have_ended(tmp_path):
    from images.build import build_side_by_side

    specs = image_specs("dlkit", "debian:bookworm")[1:]
    client = SlowBuilds(failing=specs[0].tag)
    with pytest.raises(BuildError, match=r"(?s)building dlkit-hadoop:3.4.2 failed .*hadoop.log.*mvn package"):
        build_side_by_side(client, specs, None, tmp_path, lambda phase, detail: None)
    assert "---> downloaded" in (tmp_path / "spark.log").read_text()  # the spark build was not cut short


def test_the_kit_installs_the_uv_the_spark_image_pins():
    import subprocess

    pin = dockerfile_arg("spark", "UV_VERSION")
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin)
    line = next(line for line in (ROOT / "kit").read_text().splitlines() if line.startswith("uv_version="))
    read = subprocess.run(["bash", "-c", f'root={ROOT}; {line}; echo "$uv_version"'], capture_output=True, text=True)
    assert read.stdout.strip() == pin  # the kit reads the image's pin, not a second copy


def test_ctrl_c_leaves_both_builds_at_their_next_line(tmp_path):
    import signal
    import threading
    import time

    from images.build import build_side_by_side

    specs = image_specs("dlkit", "debian:bookworm")[1:]
    both_streaming, interrupted, pressed, left = threading.Barrier(len(specs)), threading.Event(), [], set()
    pause_after_ctrl_c = {specs[0].tag: 1.0, specs[1].tag: 0.2}  # the first one waited on is the slower

    class HeldBuilds(SlowBuilds):
        """Each build streams its first step, then waits for the other's and for the Ctrl-C to land."""

        def build(self, *, tag, **_):
            try:
                yield {"stream": "Step 1/2 : FROM base\n"}
                both_streaming.wait(10)
                interrupted.wait(10)
                time.sleep(pause_after_ctrl_c[tag])  # past the main thread's few bytecodes to the stop flag
                yield {"stream": "Step 2/2 : RUN fetch\n"}
                yield {"stream": " ---> downloaded\n"}
            finally:
                left.add(tag)

    def on_step(phase, detail):
        if not pressed and "starting" not in phase:  # once both builds stream
            pressed.append(phase)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C, on the kit's main thread

    def on_ctrl_c(signum, frame):  # Python's own behaviour, and a mark that the main thread took it
        interrupted.set()
        raise KeyboardInterrupt

    # a handler of our own, as at a terminal: a CI runner may start the tests with SIGINT ignored
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            build_side_by_side(HeldBuilds(), specs, None, tmp_path, on_step)
        assert left == {spec.tag for spec in specs}  # both had left when the Ctrl-C reached the caller
    finally:
        signal.signal(signal.SIGINT, previous)
    for spec in specs:  # each read one more line after the Ctrl-C, and left
        log = (tmp_path / f"{spec.name}.log").read_text()
        assert "Step 2/2" in log and "---> downloaded" not in log


def test_two_failed_builds_are_reported_together_and_an_engine_error_names_its_image(tmp_path):
    from images.build import build_side_by_side

    specs = image_specs("dlkit", "debian:bookworm")[1:]

    class EngineGone(SlowBuilds):
        def build(self, *, tag, **_):
            if tag == specs[1].tag:
                raise ConnectionError("docker.sock went away")
            yield from SlowBuilds.build(self, tag=tag)

    with pytest.raises(BuildError) as failed:
        build_side_by_side(EngineGone(failing=specs[0].tag, pause=0.05), specs, None, tmp_path, lambda *_: None)
    message = str(failed.value)
    assert "building dlkit-hadoop:3.4.2 failed" in message and "mvn package" in message
    assert "building dlkit-spark:3.4.4-tf2.16.2 failed: docker.sock went away" in message
