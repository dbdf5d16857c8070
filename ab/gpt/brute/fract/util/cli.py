"""Shared CLI behaviour: bad input is one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
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


class Finite(click.FloatRange):
    """A float option that refuses nan and +-inf (click's FloatRange lets them through), with optional
    bounds as in click.FloatRange. Use it for every float option: `type=Finite()` or `Finite(min=0)`."""

    name = "float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Threads(click.ParamType):
    """A thread count from 1 to the CPUs this process may use."""

    name = "integer"

    def convert(self, value, param, ctx):
        n = click.INT.convert(value, param, ctx)
        cpus = available_cpus()
        if not 1 <= n <= cpus:
            self.fail(f"{n} is not in 1..{cpus}: this machine lets the process use {cpus} CPU(s)", param, ctx)
        return n


class IntOrAuto(click.IntRange):
    """An integer in range, or the word auto."""

    name = "integer|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        return super().convert(value, param, ctx)


class Path(click.Path):
    """click.Path that also refuses an empty name (which would silently mean the current folder)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path is not allowed: give a file or folder name", param, ctx)
        return super().convert(value, param, ctx)


@dataclass(frozen=True)
class DeviceChoice:
    """A parsed --device: kind auto, cpu or cuda; `indices` the listed GPUs (None: every visible one)."""

    kind: str
    indices: tuple[int, ...] | None = None

    def __str__(self) -> str:
        if self.kind == "cuda" and self.indices is not None:
            return "cuda:" + ",".join(map(str, self.indices))
        return self.kind


DEVICE_HELP = "cpu, cuda (every visible GPU), cuda:N or cuda:0,2 (the listed GPUs)"


def parse_device(text: str, allow_auto: bool = True) -> DeviceChoice:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'cuda:0,2' -> DeviceChoice; ValueError naming the fix."""
    t = str(text).strip().lower()
    if t == "auto" and allow_auto:
        return DeviceChoice("auto")
    if t in ("cpu", "cuda"):
        return DeviceChoice(t)
    m = re.fullmatch(r"cuda:(\d+(?:,\d+)*)", t)
    if m:
        idx = tuple(dict.fromkeys(int(x) for x in m.group(1).split(",")))
        return DeviceChoice("cuda", idx)
    raise ValueError(f"{text!r} is not a device: use {'auto, ' if allow_auto else ''}{DEVICE_HELP}")


class Device(click.ParamType):
    """A device: cpu, cuda, cuda:N; with `several` also cuda:0,2 (a sweep's GPUs); with `auto` also auto.
    One parser for every command (`parse_device`); the value is the normalised text."""

    name = "device"

    def __init__(self, auto: bool = False, several: bool = False) -> None:
        self.auto, self.several = auto, several

    def convert(self, value, param, ctx):
        try:
            choice = parse_device(str(value), allow_auto=self.auto)
        except ValueError:
            choice = None
        if choice is None or (not self.several and choice.indices is not None and len(choice.indices) > 1):
            ok = ("auto, " if self.auto else "") + "cpu, cuda or cuda:N" + (" or cuda:0,2" if self.several else "")
            self.fail(f"{value!r} is not a device: use {ok}", param, ctx)
        return str(choice)


class FileStem(click.ParamType):
    """A base name for files written into the output folder: not empty, no path separators."""

    name = "name"

    def convert(self, value, param, ctx):
        text = str(value)
        if not text.strip() or text in (".", "..") or "/" in text or "\0" in text or text != text.strip():
            self.fail(f"{value!r} is not a plain file name: use letters, digits, '-', '_' or '.', no '/'", param, ctx)
        return text


MAX_LIST = 10_000  # values one list option may expand to ('1-99999999999' would exhaust memory)


def int_list(text: str, name: str) -> tuple[int, ...]:
    """'1-4' or '1,2,5' or '1-3,6' -> (1, 2, 3, 6)."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise click.BadParameter(f"{text!r} is not a list of integers or ranges like 1-4,6",
                                     param_hint=f"--{name}")
        a = int(m.group(1))
        b = int(m.group(2) or a)
        if len(out) + b - a >= MAX_LIST:
            raise click.BadParameter(f"{text!r} names more than {MAX_LIST} values", param_hint=f"--{name}")
        out.extend(range(a, b + 1))
    return tuple(dict.fromkeys(out))


def float_list(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(dict.fromkeys(float(p) for p in text.split(",") if p.strip()))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r} is not a comma-separated list of finite numbers",
                                 param_hint=f"--{name}")
    return values


def str_list(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
