"""images.*: build the kit's Docker images (base, hadoop, spark)."""

from __future__ import annotations

import time
from pathlib import Path

from invoke import Exit, task

from cli.engine import ensure_engine
from cli.progress import LiveLine, say
from cli.settings import kit_settings, project_image_specs
from images.build import (
    BuildError,
    build_side_by_side,
    image_specs,
    image_state,
    resolve_ca_bundle,
    resolve_debian_base,
)


def build_all(c, extra_ca_bundle: str | None = None) -> dict[str, float]:
    """Build every image (cached layers are reused): base, then hadoop and spark at once; returns seconds per image."""
    settings = kit_settings(c).images
    bundle, source = resolve_ca_bundle(settings.extra_ca_bundle if extra_ca_bundle is None else extra_ca_bundle)
    say(f"build: trusting {bundle} ({source})" if bundle else f"build: no extra CA bundle: {source}")
    client = ensure_engine()
    timings = {}
    try:
        started = time.monotonic()
        debian = resolve_debian_base(client, settings.debian_image, settings.debian_mirror, settings.prefix, say)
        timings["debian"] = time.monotonic() - started
        base, *on_base = image_specs(settings.prefix, debian)
        for group in ([base], on_base):  # hadoop and spark share only the base: built at once
            line = LiveLine("kit: build " + " and ".join(spec.tag for spec in group))
            try:
                built = build_side_by_side(client, group, bundle, Path(settings.log_dir), line.update)
            except BuildError:
                line.done("failed")
                raise
            except KeyboardInterrupt:
                line.done("interrupted")
                raise
            each = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in built.items())
            line.done(f"built ({each})" if len(built) > 1 else "built")
            timings.update(built)
    except BuildError as error:
        raise Exit(f"kit: {error}") from error
    return timings


def ensure_images(c, client) -> None:
    """Build the images when any is missing (as `docker compose up` would); name the stale ones.

    A stale image (built from other Dockerfiles or pins than today's) is used as it is, and
    said: rebuilding takes minutes, so it waits for `images.build`."""
    specs = project_image_specs(c)
    states = {spec.tag: image_state(client, spec) for spec in specs[1:]}  # base is only built upon
    missing = [tag for tag, state in states.items() if state == "missing"]
    if missing:
        say(f"images {', '.join(missing)} not built yet: building them now (minutes the first time, cached afterwards)")
        build_all(c)
        return
    for tag, state in states.items():
        if state == "stale":
            say(
                f"warning: image {tag} was built from older sources (its Dockerfile, scripts or pins changed "
                "since): './kit images.build' rebuilds it; using it as it is"
            )


@task(
    help={
        "extra_ca_bundle": "PEM bundle trusted inside the builds: a path, 'auto' (the host's) or '' "
        "(default: images.extra_ca_bundle)"
    }
)
def build(c, extra_ca_bundle=None):
    """Build the base, hadoop and spark images; unchanged layers come from the cache."""
    timings = build_all(c, extra_ca_bundle)
    each = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timings.items())
    say(f"build times: {each} (hadoop and spark at once)")


@task
def ls(c):
    """List the kit's images with their sizes."""
    client = ensure_engine()
    for spec in project_image_specs(c):
        try:
            image = client.images.get(spec.tag)
            print(f"{spec.tag:45s} {image.attrs['Size'] / 1e9:6.2f} GB")
        except Exception:
            print(f"{spec.tag:45s}  (not built: ./kit images.build)")
