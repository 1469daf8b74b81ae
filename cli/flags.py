"""Task flags checked before any work starts: one line naming the flag, its value and what it may be."""

from __future__ import annotations

from invoke import Exit

USAGE_ERROR = 2  # as argparse: the command line was wrong, nothing ran


def whole(value, flag: str, low: int = 1) -> int | None:
    """A count flag as an int (None when not given)."""
    if value is None:
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise Exit(f"kit: {flag} {value}: not a whole number; give one of {low} or more", code=USAGE_ERROR) from None
    if number < low:
        raise Exit(f"kit: {flag} {value}: must be {low} or more", code=USAGE_ERROR)
    return number


def share(value, flag: str) -> float | None:
    """A fraction flag (0 < value <= 1) as a float (None when not given)."""
    if value is None:
        return None
    try:
        number = float(str(value))
    except ValueError:
        raise Exit(f"kit: {flag} {value}: not a number; give a fraction above 0 and at most 1", code=USAGE_ERROR) from None
    if not 0 < number <= 1:
        raise Exit(f"kit: {flag} {value}: must be above 0 and at most 1", code=USAGE_ERROR)
    return number


def one_of(value, flag: str, choices) -> str | None:
    """A flag with named values (None when not given)."""
    if value is not None and value not in choices:
        raise Exit(f"kit: {flag} {value}: use one of {', '.join(choices)}", code=USAGE_ERROR)
    return value
