"""Shared CLI behaviour and vocabulary.

Bad input is one line on stderr and exit code 2, never a traceback. Every command is a `command(...)`
built from `option(...)`s placed in `option_group(...)`s (cloup), so `--help` shows grouped options with
their true defaults; an option's former spellings (`old=`) stay as hidden aliases that print a one-line
deprecation notice. The same concept has the same flag everywhere: --models, --results, --db, --device,
--batch, --seed, auto|on|off modes, -q/--quiet (tests/test_cli_convention.py holds the table).
"""
from __future__ import annotations

import copy
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Iterable

import click
import cloup
from click.core import ParameterSource

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

    def _describe_range(self) -> str:  # unbounded: no range in --help (click would print x<=None)
        return "" if self.min is None and self.max is None else super()._describe_range()


SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy's generators both take it


class Seed(click.IntRange):
    """A random seed: 0 <= seed < 2**63."""

    def __init__(self) -> None:
        super().__init__(0, SEED_MAX)

    def _describe_range(self) -> str:
        return "0<=x<2**63"


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


# without one of these a machine has no GPU torch could use (NVIDIA's driver, or ROCm's kernel driver)
GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd")


def gpu_driver_present() -> bool:
    """False where torch cannot see a GPU whatever it is asked (answered without importing torch)."""
    return any(os.path.exists(p) for p in GPU_DRIVER_PATHS)


def resolve_device(device: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; other names unchanged. A machine without a GPU driver
    is answered without importing torch (1.5 s)."""
    if device != "auto":
        return device
    if not gpu_driver_present():
        return "cpu"
    import torch  # heavy: only where a GPU driver is present

    return "cuda" if torch.cuda.is_available() else "cpu"


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


# ---- the shared vocabulary: commands, grouped options, deprecated aliases ---------------------------------

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True,
           "formatter_settings": {"max_width": 110}}
MODES = ("auto", "on", "off")  # AMP, checkpointing, channels-last, compile: one spelling in every command
option_group = cloup.option_group


class Option(click.Option):
    """click.Option with a default shown as text when it is computed (show_default="<LEMUR root>/new_lemur"
    prints `[default: <LEMUR root>/new_lemur]`) and former spellings `old`, which `Command` adds as hidden
    aliases: an alias sets its `target` option's value after a one-line deprecation notice on stderr."""

    def __init__(self, *args, old: Iterable[str] = (), target: str | None = None, replaced_by: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.old, self.target, self.replaced_by = tuple(old), target, replaced_by

    def get_help_extra(self, ctx):
        extra = super().get_help_extra(ctx)
        if isinstance(self.show_default, str):
            extra["default"] = self.show_default
        return extra

    def process_value(self, ctx, value):
        from_alias = vars(ctx).setdefault("_from_alias", {})  # option name -> the value an old spelling gave
        on_command_line = ctx.get_parameter_source(self.name) is ParameterSource.COMMANDLINE
        if self.replaced_by and on_command_line:
            if self.target and (ctx.get_parameter_source(self.target) is ParameterSource.COMMANDLINE
                                or self.target in from_alias):
                raise click.UsageError(f"{self.opts[0]} is an old spelling of {self.replaced_by}: give one of them")
            click.echo(f"{self.opts[0]} is deprecated, use {self.replaced_by}", err=True)
        if self.target:  # an old spelling: its value goes to the target option
            if on_command_line:
                from_alias[self.target] = super().process_value(ctx, value)
            return None
        if self.name in from_alias:
            if on_command_line:
                raise click.UsageError(f"{self.opts[0]} was also given by an old spelling: give one of them")
            ctx.set_parameter_source(self.name, ParameterSource.COMMANDLINE)
            return from_alias[self.name]
        return super().process_value(ctx, value)


def option(*decls: str, **attrs):
    return cloup.option(*decls, cls=Option, **attrs)


def mode_option(*decls: str, modes: tuple[str, ...] = MODES, **attrs):
    """An auto|on|off option; the bare flag means on."""
    return option(*decls, type=click.Choice(modes), is_flag=False, flag_value="on", **attrs)


def quiet_option(help: str = "no progress bars or status messages; results and errors still print"):
    return option("-q", "--quiet", is_flag=True, help=help)


def _alias(opt: Option, old: str) -> Option:
    """A hidden copy of `opt` spelled `old` that prints `OLD is deprecated, use NEW` and sets `opt`."""
    alias = copy.copy(opt)
    alias.name = f"{opt.name}__{old.lstrip('-').replace('-', '_')}"
    alias.opts, alias.secondary_opts, alias.old, alias.target = [old], [], (), opt.name
    alias.hidden, alias.required, alias.envvar, alias.group, alias.expose_value = True, False, None, None, False
    alias.replaced_by = max(opt.opts, key=len)
    return alias


def deprecated_flag(old: str, target: str, value, new: str):
    """A hidden flag `old` that sets option `target` to `value` (e.g. --no-amp -> --amp off)."""
    return click.option(old, f"{target}__{old.lstrip('-').replace('-', '_')}", flag_value=value, hidden=True,
                        expose_value=False, target=target, replaced_by=new, cls=Option)


def deprecated_mode(old: str, name: str, new: str):
    """A hidden flag `old` (parameter `name`) for a mode that became a subcommand, e.g. --list-space."""
    return click.option(old, name, is_flag=True, hidden=True, replaced_by=new, cls=Option)


class Command(cloup.Command):
    """A command whose options' former spellings (Option.old) parse as hidden, deprecated aliases."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("context_settings", CONTEXT)
        super().__init__(*args, **kwargs)
        self.params.extend(_alias(p, old) for p in list(self.params) if isinstance(p, Option) for old in p.old)


class Group(cloup.Group):
    """A command group of `Command`s with the shared context settings."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("context_settings", CONTEXT)
        super().__init__(*args, **kwargs)

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


def command(name: str | None = None, **attrs):
    return cloup.command(name, cls=Command, **attrs)


def derive(base: click.Command, name: str, *, keep: Iterable[str] | None = None, drop: Iterable[str] = (),
           fixed: dict | None = None, **attrs) -> Command:
    """A command with some of `base`'s options that runs `base` with the rest at their defaults and the
    `fixed` ones set (e.g. `plan` = NNEval with --plan on and only the options a plan reads)."""
    fixed, drop = dict(fixed or {}), set(drop)
    keep = None if keep is None else set(keep)
    groups: dict[int, cloup.OptionGroup] = {}
    params = []
    for p in base.params:
        if (getattr(p, "target", None) or p.name in fixed or p.name in drop
                or (keep is not None and p.name not in keep)):
            continue
        q = copy.copy(p)
        if getattr(p, "group", None) is not None:
            q.group = groups.setdefault(id(p.group), copy.copy(p.group))
        params.append(q)

    def callback(**kwargs):
        return click.get_current_context().invoke(base, **kwargs, **fixed)

    attrs.setdefault("help", base.help)
    attrs.setdefault("epilog", base.epilog)
    return Command(name, params=params, callback=callback, **attrs)
