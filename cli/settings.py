"""The kit's settings, typed and checked once: invoke.yaml (and INVOKE_* variables) -> dataclasses.

Each section of invoke.yaml is a dataclass below with the same keys. No default is written
here: invoke.yaml holds every default, and a key it lacks is an error. Values are converted to
the field's type and checked against its range before any work starts; a wrong one ends the
task with one line naming the setting, its value and what it may be.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import typing

from invoke import Context, Exit
from invoke.env import Environment
from invoke.exceptions import UncastableEnvVar

from cluster.hosts import HostSpec
from cluster.topology import ClusterShape
from images.build import image_specs
from jobs.lib.barrier_training import RECIPES
from jobs.lib.gradient_reduction import GRADIENT_DTYPES


def keep_uncastable_env_values_as_text() -> None:
    """invoke casts an INVOKE_* variable to the type of invoke.yaml's value and fails with a traceback
    on INVOKE_CLUSTER_DATANODES=two; kept as text, the value reaches convert() below, which names it in
    one line."""
    original = Environment._cast
    if getattr(original, "lenient", False):
        return

    def cast(self, old, new):
        try:
            return original(self, old, new)
        except (ValueError, UncastableEnvVar):  # the latter: a list setting (cluster.hosts) set from a variable
            return new

    setattr(cast, "lenient", True)
    setattr(Environment, "_cast", cast)  # noqa: B010  (a method of invoke's, replaced on purpose)


keep_uncastable_env_values_as_text()


def rule(low=None, high=None, choices=None, above=None):
    """A field's allowed range or values (it has no default: invoke.yaml has them all)."""
    return dataclasses.field(metadata={"low": low, "high": high, "choices": choices, "above": above})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Images:
    prefix: str
    debian_image: str
    debian_mirror: str
    extra_ca_bundle: str
    log_dir: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cluster:
    project: str
    datanodes: int = rule(low=1)
    replication: int = rule(low=1)
    worker_cores: int = rule(low=1)
    worker_memory_gb: int = rule(low=1)
    worker_container_memory_gb: int = rule(low=1)
    executor_cores: int = rule(low=1)
    executor_memory_gb: int = rule(low=1)
    bind_address: str
    expose_beyond_loopback: bool
    namenode_ui_port: int = rule(low=0, high=65535)
    spark_master_ui_port: int = rule(low=0, high=65535)
    spark_worker_ui_port: int = rule(low=0, high=65535)
    spark_history_ui_port: int = rule(low=0, high=65535)
    startup_timeout: float = rule(above=0)
    job_time_limit_hours: float = rule(above=0)
    hosts: tuple[HostSpec, ...]
    swarm_address_pool: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Test:
    pytest_args: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Data:
    dir: str
    url: str
    md5: str
    retries: int = rule(low=1)
    synthetic_train_per_batch: int = rule(low=1)
    synthetic_test_records: int = rule(low=1)
    synthetic_seed: int
    synthetic_difficulty: str = rule(choices=("easy", "hard"))
    hdfs_root: str
    shards: int = rule(low=1)
    results_dir: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Train:
    hdfs_runs: str
    slots: int = rule(low=1)
    cores_per_slot: int = rule(low=1)
    epochs: int = rule(low=1)
    batch_per_worker: int = rule(low=1)
    recipe: str = rule(choices=RECIPES)
    gradient_dtype: str = rule(choices=GRADIENT_DTYPES)
    attempts: int = rule(low=1)
    recovery_wait: float = rule(low=0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bench:
    slots: str
    epochs: int = rule(low=1)
    cores_per_slot: int = rule(low=1)
    repeats: int = rule(low=1)
    probe_steps: int = rule(low=0)

    @property
    def slot_counts(self) -> list[int]:
        return slot_counts(self.slots, "bench.slots")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Demo:
    epochs: int = rule(low=1)
    steps_per_epoch: int = rule(low=0)
    validation_records: int = rule(low=0)
    eda_fraction: float = rule(above=0, high=1)
    baselines: str
    full_baselines: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    images: Images
    cluster: Cluster
    test: Test
    data: Data
    train: Train
    bench: Bench
    demo: Demo


def slot_counts(text: str, name: str) -> list[int]:
    """ "1,2" -> [1, 2]: the slot counts a bench compares."""
    try:
        counts = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise Exit(f"kit: {name} = {text!r}: give slot counts of 1 or more separated by commas, e.g. 1,2")
    return counts


def host_specs(value) -> tuple[HostSpec, ...]:
    """cluster.hosts: a list of mappings with HostSpec's keys (topology.validate checks the values)."""
    if value in (None, "", []):
        return ()
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise Exit(
            "kit: setting cluster.hosts must be a list of hosts, each a mapping (name, endpoint, address, runs...): "
            "set it in invoke.yaml or a file given with -f, not in a variable"
        )
    fields = {f.name: f for f in dataclasses.fields(HostSpec)}
    required = [name for name, f in fields.items() if f.default is dataclasses.MISSING]
    hosts = []
    for index, entry in enumerate(value):
        where = f"cluster.hosts[{index}]"
        unknown = sorted(map(str, set(entry) - set(fields)))
        missing = [name for name in required if name not in entry]
        if unknown or missing:
            raise Exit(
                f"kit: setting {where} "
                + "; ".join(
                    ([f"has unknown key(s) {', '.join(unknown)}"] if unknown else [])
                    + ([f"lacks {', '.join(missing)}"] if missing else [])
                )
                + f": a host has {', '.join(fields)}"
            )
        runs = entry["runs"]
        if isinstance(runs, str) or not isinstance(runs, list):
            raise Exit(f"kit: setting {where}.runs = {runs!r} must be a list of roles, e.g. [datanode, spark-worker]")
        mtu = entry.get("mtu", fields["mtu"].default)
        if isinstance(mtu, bool) or not isinstance(mtu, int):
            raise Exit(f"kit: setting {where}.mtu = {mtu!r} is not an integer (bytes, e.g. 1500)")
        manager = entry.get("manager", fields["manager"].default)
        if not isinstance(manager, bool):
            raise Exit(f"kit: setting {where}.manager = {manager!r} must be true or false")
        hosts.append(
            HostSpec(
                name=str(entry["name"]),
                endpoint=str(entry["endpoint"]),
                address=str(entry["address"]),
                runs=tuple(str(role) for role in runs),
                manager=manager,
                mtu=mtu,
            )
        )
    return tuple(hosts)


def convert(section: str, field: dataclasses.Field, kind: type, value):
    name = f"{section}.{field.name}"
    if kind == tuple[HostSpec, ...]:
        return host_specs(value)
    if value is None:
        value = ""  # an empty value in YAML
    try:
        if kind is int and (isinstance(value, float) or str(value).strip() != str(int(value))):
            raise ValueError
        converted = kind(value)
    except (TypeError, ValueError):
        raise Exit(
            f"kit: setting {name} = {value!r} is not {'an integer' if kind is int else 'a number'}: "
            f"fix it in invoke.yaml or INVOKE_{section.upper()}_{field.name.upper()}"
        ) from None
    low, high = field.metadata.get("low"), field.metadata.get("high")
    above, choices = field.metadata.get("above"), field.metadata.get("choices")
    wrong = (
        (low is not None and converted < low)
        or (high is not None and converted > high)
        or (above is not None and converted <= above)
        or (choices and converted not in choices)
    )
    if wrong:
        allowed = (
            f"one of {', '.join(choices)}"
            if choices
            else " and ".join(
                part
                for part in (
                    f"at least {low}" if low is not None else "",
                    f"above {above}" if above is not None else "",
                    f"at most {high}" if high is not None else "",
                )
                if part
            )
        )
        raise Exit(
            f"kit: setting {name} = {value!r} must be {allowed}: "
            f"fix it in invoke.yaml or INVOKE_{section.upper()}_{field.name.upper()}"
        )
    return converted


def section_from(config, section: str, cls):
    values = config.get(section) or {}
    hints = typing.get_type_hints(cls)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values]
    if missing:
        raise Exit(
            f"kit: invoke.yaml has no {', '.join(f'{section}.{m}' for m in missing)}: restore it from the project's invoke.yaml"
        )
    return cls(**{f.name: convert(section, f, hints[f.name], values[f.name]) for f in dataclasses.fields(cls)})


def kit_settings(c: Context) -> Settings:
    """The typed settings of this context's config, read and checked once per config."""
    config = c.config
    if "_dlkit_settings" not in config.__dict__:
        sections = typing.get_type_hints(Settings)
        config.__dict__["_dlkit_settings"] = Settings(
            **{name: section_from(config, name, kind) for name, kind in sections.items()}
        )
    return config.__dict__["_dlkit_settings"]


def project_image_specs(c: Context) -> list:
    """The images this config builds and runs (names, tags, build contexts)."""
    images = kit_settings(c).images
    return image_specs(images.prefix, images.debian_image)


def image_tags(c: Context) -> dict[str, str]:
    return {spec.name: spec.tag for spec in project_image_specs(c)}


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def cluster_shape(c: Context, project: str | None = None) -> ClusterShape:
    cluster, tags = kit_settings(c).cluster, image_tags(c)
    values = {field.name: getattr(cluster, field.name) for field in dataclasses.fields(cluster)}  # HostSpecs kept whole
    values["project"] = project or cluster.project
    if not values.pop("expose_beyond_loopback") and not is_loopback(cluster.bind_address):
        raise Exit(
            f"kit: setting cluster.bind_address = {cluster.bind_address} would publish the UIs beyond this machine, "
            "WebHDFS among them, where HDFS's simple authentication lets anyone act as any user: keep 127.0.0.1, "
            "or set cluster.expose_beyond_loopback: true on a network you trust"
        )
    return ClusterShape(hadoop_image=tags["hadoop"], spark_image=tags["spark"], **values)
