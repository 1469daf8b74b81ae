"""How a job hands its result to whoever launched it: one `RESULT <json>` line on stdout.

The kit's tasks and the tests read that line from the client container's output; a user
error (bad input, too few slots) ends the job with one line and exit code 1 instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Iterable

PREFIX = "RESULT "


class JobArguments(argparse.ArgumentParser):
    """argparse whose errors are one line (the flag, what is wrong, where the flags are listed), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (--help lists the flags)\n")


def emit(result: dict) -> None:
    print(PREFIX + json.dumps(result), flush=True)


def find(lines: Iterable[str]) -> dict | None:
    """The last RESULT line's JSON, or None when the job printed none."""
    found = None
    for line in lines:
        if line.startswith(PREFIX):
            found = json.loads(line[len(PREFIX) :])
    return found


def run_main(label: str, run: Callable, args, user_errors: tuple = (), hide: tuple[str, ...] = ()) -> dict:
    """run(args); emit its result less the `hide` keys; user errors exit 1 with one line."""
    try:
        result = run(args)
    except user_errors as error:
        print(f"{label}: {error}", file=sys.stderr)
        sys.exit(1)
    emit({key: value for key, value in result.items() if key not in hide})
    return result
