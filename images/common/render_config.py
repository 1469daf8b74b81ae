"""Render configuration files from environment variables, in one place for every image.

An environment variable ``FILE_key=value`` whose FILE ends in ``.XML``, ``.CONF`` or
``.PROPERTIES`` becomes a ``key``/``value`` entry of ``file`` (lower-cased) in the target
folder, e.g. ``HDFS-SITE.XML_dfs.replication=2`` -> ``hdfs-site.xml``. Each file named in the
environment is written whole on every start (never appended to), values are escaped for the
file's syntax, and a file never appears half-written.

Runs inside the images with nothing but the standard library, and is imported by unit tests.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

ENV_PATTERN = re.compile(r"^(?P<file>[A-Z0-9][A-Z0-9-]*\.(?:XML|CONF|PROPERTIES))_(?P<key>.+)$")
# Characters XML 1.0 cannot carry at all, even escaped.
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


class ConfigError(ValueError):
    """An environment entry that cannot be rendered faithfully."""


def collect(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    """Group ``FILE_key=value`` entries by lower-cased file name, keys in sorted order."""
    files: dict[str, dict[str, str]] = {}
    for name in sorted(environ):
        match = ENV_PATTERN.match(name)
        if match:
            files.setdefault(match["file"].lower(), {})[match["key"]] = environ[name]
    return files


def xml_escape(text: str, where: str) -> str:
    if XML_FORBIDDEN.search(text):
        raise ConfigError(f"{where}: contains a control character that XML cannot represent")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&apos;")


def render_hadoop_xml(entries: dict[str, str], file_name: str = "site.xml") -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!-- Rendered from the environment at container start; edits are overwritten. -->",
        "<configuration>",
    ]
    for key, value in entries.items():
        where = f"{file_name} {key}"
        lines.append("  <property>")
        lines.append(f"    <name>{xml_escape(key, where)}</name>")
        lines.append(f"    <value>{xml_escape(value, where)}</value>")
        lines.append("  </property>")
    lines.append("</configuration>")
    return "\n".join(lines) + "\n"


def properties_escape(text: str, is_key: bool) -> str:
    """Escape for java.util.Properties, the syntax Spark reads spark-defaults.conf with."""
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char in "=:#!" and (is_key or index == 0):
            out.append("\\" + char)
        elif char == " " and (is_key or index == 0):
            out.append("\\ ")
        else:
            out.append(char)
    return "".join(out)


def render_properties(entries: dict[str, str]) -> str:
    lines = ["# Rendered from the environment at container start; edits are overwritten."]
    lines += [f"{properties_escape(k, True)}={properties_escape(v, False)}" for k, v in entries.items()]
    return "\n".join(lines) + "\n"


def render(file_name: str, entries: dict[str, str]) -> str:
    if file_name.endswith(".xml"):
        return render_hadoop_xml(entries, file_name)
    return render_properties(entries)


def write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".render-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def render_all(target_dir: str, environ: dict[str, str]) -> list[str]:
    rendered = {name: render(name, entries) for name, entries in collect(environ).items()}
    for name, text in rendered.items():
        write_atomically(os.path.join(target_dir, name), text)
    return sorted(rendered)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: render_config.py TARGET_DIR", file=sys.stderr)
        return 2
    try:
        written = render_all(argv[0], dict(os.environ))
    except ConfigError as error:
        print(f"render_config: {error}", file=sys.stderr)
        return 1
    for name in written:
        print(f"render_config: wrote {os.path.join(argv[0], name)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
