"""A job's arguments as one dataclass: the launcher builds it and turns it into argv, the job
parses argv back into the same dataclass. The fields are the whole interface, in one place.

    @dataclasses.dataclass(frozen=True)
    class StageArgs(JobArgs):
        source: str = flag("local folder of the batch files")
        shards: int = flag("TFRecord files per split", low=1)
        force: bool = flag("stage again even when up to date", default=False)

A field without a default is required; `low` is the least value of a number; a bool is a switch
(`--force` when its default is False, `--no-<name>` when it is True).
"""

from __future__ import annotations

import dataclasses
import types
import typing

from jobs.lib.result import JobArguments


def flag(help: str = "", *, default=dataclasses.MISSING, low=None, choices=None, option=None):
    """A field of a job's arguments; `option` overrides the command-line name."""
    return dataclasses.field(default=default, metadata={"help": help, "low": low, "choices": choices, "option": option})


def at_least(least, kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a {kind.__name__}") from None
        if value < least:
            import argparse

            raise argparse.ArgumentTypeError(f"{value} must be {least} or more")
        return value

    parse.__name__ = kind.__name__
    return parse


class JobArgs:
    """Base of a job's arguments dataclass: parse(argv) and to_argv()."""

    @classmethod
    def fields(cls) -> list[tuple[dataclasses.Field, type, bool]]:
        """(field, value type, optional) of each field, in declaration order."""
        hints = typing.get_type_hints(cls)
        found = []
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind, optional = hints[field.name], False
            if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
                options = [k for k in typing.get_args(kind) if k is not type(None)]
                kind, optional = options[0], True
            found.append((field, kind, optional))
        return found

    @classmethod
    def option(cls, field: dataclasses.Field) -> str:
        if field.metadata.get("option"):
            return field.metadata["option"]
        name = field.name.replace("_", "-")
        return f"--no-{name}" if field.type in (bool, "bool") and field.default is True else f"--{name}"

    @classmethod
    def parser(cls, description: str | None = None, **kwargs) -> JobArguments:
        parser = JobArguments(description=description, **kwargs)
        for field, kind, _ in cls.fields():
            meta, name = field.metadata, cls.option(field)
            if kind is bool:
                action = "store_false" if field.default is True else "store_true"
                parser.add_argument(name, dest=field.name, action=action, help=meta.get("help"))
                continue
            extra = {"required": True} if field.default is dataclasses.MISSING else {"default": field.default}
            converter = at_least(meta["low"], kind) if meta.get("low") is not None else kind
            parser.add_argument(
                name, dest=field.name, type=converter, choices=meta.get("choices"), help=meta.get("help"), **extra
            )
        return parser

    @classmethod
    def parse(cls, argv: list[str] | None = None, description: str | None = None, **kwargs):
        return cls(**vars(cls.parser(description, **kwargs).parse_args(argv)))

    def to_argv(self) -> list[str]:
        argv = []
        for field, kind, _ in self.fields():
            value = getattr(self, field.name)
            if kind is bool:
                if value != field.default:
                    argv.append(self.option(field))
            elif value is not None:
                argv += [self.option(field), str(value)]
        return argv
