"""One TensorFlow: tf-keras depends on `tensorflow`, so a second distribution (tensorflow-cpu)
would install beside it and one would shadow the other's files."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

from images.build import requirement_pins

ROOT = Path(__file__).resolve().parents[2]
TENSORFLOW_DISTRIBUTIONS = {
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-intel",
    "tensorflow-aarch64",
    "tf-nightly",
    "tf-nightly-cpu",
}


def installed_names() -> set[str]:
    return {re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower() for dist in metadata.distributions()}


def test_exactly_one_tensorflow_distribution_is_installed():
    found = installed_names() & TENSORFLOW_DISTRIBUTIONS
    assert found == {"tensorflow"}, f"TensorFlow distributions installed: {sorted(found)}"


def test_the_pins_name_the_tensorflow_that_tf_keras_depends_on():
    requirements = metadata.requires("tf-keras") or []
    assert any(re.match(r"tensorflow\s*[<>=]", requirement) for requirement in requirements), requirements
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for pins in (requirement_pins(), {d.split("==")[0].lower(): d.split("==")[1] for d in project}):
        assert set(pins) & TENSORFLOW_DISTRIBUTIONS == {"tensorflow"}, sorted(pins)
