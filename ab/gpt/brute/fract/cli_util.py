"""Shared CLI behaviour: bad input is one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import re
import sys
from typing import Iterable

import click

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError)


def run(command: click.Command, args: list[str] | None = None, errors: Iterable[type] = ()) -> None:
    """Run a click command; usage errors and the given error types print one line and exit 2."""
    try:
        rv = command.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}".replace("\n", " "), err=True)
        sys.exit(2)
    except tuple(errors) + USER_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        click.echo(f"error: {msg}".splitlines()[0], err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


def int_list(text: str, name: str) -> tuple[int, ...]:
    """'1-4' or '1,2,5' or '1-3,6' -> (1, 2, 3, 6)."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise click.BadParameter(f"{text!r} is not a list of integers or ranges like 1-4,6",
                                     param_hint=f"--{name}")
        a = int(m.group(1))
        out.extend(range(a, int(m.group(2) or a) + 1))
    return tuple(dict.fromkeys(out))


def float_list(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(dict.fromkeys(float(p) for p in text.split(",") if p.strip()))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers",
                                 param_hint=f"--{name}") from None


def str_list(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
