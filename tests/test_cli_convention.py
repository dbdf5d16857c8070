"""One CLI language: every command (each subcommand of every group, the `python -m` entry points and
`nn-gpt-fractal`) follows the same convention, and the old spellings still work with a notice.

The commands are walked in this process; only the alias checks at the end run a command (cheap modes)."""
from __future__ import annotations

import json
import re

import click
import numpy as np
import pytest

from ab.gpt import NNEval
from ab.gpt.brute.fract import AlterNNFN, cli
from ab.gpt.brute.fract.util import cli as cli_util
from ab.gpt.brute.fract.boundary import __main__ as boundary
from ab.gpt.brute.fract.lemur import __main__ as lemur
from ab.gpt.brute.fract.report import __main__ as report

ROOTS = {"python -m ab.gpt.NNEval": NNEval.main, "python -m ab.gpt.brute.fract.AlterNNFN": AlterNNFN.main,
         "python -m ab.gpt.brute.fract.report": report.main, "python -m ab.gpt.brute.fract.boundary": boundary.cli,
         "python -m ab.gpt.brute.fract.lemur": lemur.main, "nn-gpt-fractal": cli.group}

# concept -> its one spelling, by parameter name
CONCEPTS = {"models": "--models", "results": "--results", "report": "--report", "out_dir": "--maps", "db": "--db",
            "device": "--device", "batch": "--batch", "batch_size": "--batch", "quiet": "--quiet", "seed": "--seed",
            "amp": "--amp", "checkpointing": "--checkpointing", "channels_last": "--channels-last",
            "compile_mode": "--compile", "data_dir": "--data-dir", "workers": "--workers", "timeout": "--timeout",
            "limit": "--limit", "executor": "--executor", "address": "--address", "threads": "--threads"}
RETIRED = {"--out", "--output", "--new-lemur", "--batch-size", "--list-space", "--list-plugins", "--no-amp",
           "--no-checkpointing", "--order-models", "--bs"}
GROUPS = {"Estimate", "Common", "Training", "Schedule", "Workers and cluster", "Advanced performance", "Limits",
          "Space", "Generator", "Validation", "Closed loop", "Report", "Grid", "Network and data", "Readout", "Zoom"}
RESULT_ONLY = ("space", "plugins", "site-dir", "migrate", "study plan")  # their whole output is the result: no -q


def _leaves(cmd: click.Command, path: str):
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _leaves(cmd.get_command(ctx, name), f"{path} {name}")
    else:
        yield path, cmd


LEAVES = [leaf for path, root in ROOTS.items() for leaf in _leaves(root, path)]
IDS = [path for path, _ in LEAVES]


def _visible(cmd):
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]


def _ctx(cmd, path):
    return cmd.context_class(cmd, info_name=path, **cmd.context_settings)


def _kind(p: click.Option) -> str:
    """What a flag takes, coarsely: one spelling must not take different kinds of value in two commands."""
    t = p.type
    if p.is_flag and p.is_bool_flag:
        return "flag"
    for kind, cls in (("device", cli_util.Device), ("path", click.Path), ("float", click.types.FloatParamType),
                      ("int", click.types.IntParamType), ("int", cli_util.Threads)):
        if isinstance(t, cls):
            return kind
    return "text"


def test_the_walk_covers_every_command():
    names = {path.split(" ", 1)[1] for path in IDS if path.startswith("nn-gpt-fractal ")}
    assert {"space", "generate", "plan", "eval", "report", "boundary map", "boundary zoom", "boundary dimension",
            "boundary cnn", "lemur migrate", "lemur site-dir", "plugins"} <= names
    assert len(LEAVES) >= 9 + 12  # the python -m entry points and nn-gpt-fractal (and study's)


@pytest.mark.parametrize("path, cmd", LEAVES, ids=IDS)
def test_every_option_has_help_a_group_and_a_shown_default(path, cmd):
    ctx = _ctx(cmd, path)
    for p in _visible(cmd):
        name = p.opts[0]
        assert p.help and p.help.strip(), f"{path} {name}: no help text"
        group = getattr(p, "group", None)
        assert group is not None and group.title in GROUPS, f"{path} {name}: not in a known option group"
        record = p.get_help_record(ctx)[1]
        if not (p.is_flag and p.is_bool_flag and not p.secondary_opts):
            assert "default:" in record or p.required, f"{path} {name}: no default shown: {record}"
    titles = [g.title for g in getattr(cmd, "option_groups", [])]
    if "Common" in titles:
        assert titles[0] in ("Estimate", "Common"), f"{path}: groups start with {titles[0]}"


@pytest.mark.parametrize("path, cmd", LEAVES, ids=IDS)
def test_help_reads_cleanly_with_examples(path, cmd):
    text = cmd.get_help(_ctx(cmd, path))
    assert "Example" in text, f"{path}: no examples"
    assert "None" not in text and "9223372036854775807" not in text, text
    assert not re.search(r"x[<>]=?None", text)


@pytest.mark.parametrize("path, cmd", LEAVES, ids=IDS)
def test_one_spelling_per_concept(path, cmd):
    visible = _visible(cmd)
    spellings = {o for p in visible for o in p.opts + p.secondary_opts}
    assert not spellings & RETIRED, f"{path}: retired spelling {spellings & RETIRED}"
    for p in visible:
        if p.name in CONCEPTS:
            assert CONCEPTS[p.name] in p.opts, f"{path}: {p.name} is spelled {p.opts}, not {CONCEPTS[p.name]}"
        if p.name in ("amp", "checkpointing", "channels_last", "compile_mode"):
            assert isinstance(p.type, click.Choice) and set(p.type.choices) <= set(cli_util.MODES)
            assert p.flag_value == "on"  # the bare flag means on, everywhere
        if p.name == "device":
            assert isinstance(p.type, cli_util.Device)
        if p.name == "seed":
            assert isinstance(p.type, cli_util.Seed)
    if not path.endswith(RESULT_ONLY):
        quiet = [p for p in visible if p.name == "quiet"]
        assert quiet and quiet[0].opts == ["-q", "--quiet"], f"{path}: no -q/--quiet"


def test_no_spelling_means_two_things():
    """A flag takes the same kind of value in every command that has it (the old --dropout took rates in
    AlterNNFN and prm['dropout'] in NNEval; --norm a list in AlterNNFN and a switch in boundary)."""
    kinds: dict[str, dict[str, str]] = {}
    for path, cmd in LEAVES:
        for p in _visible(cmd):
            for spelling in p.opts:
                kinds.setdefault(spelling, {})[path] = _kind(p)
    mixed = {s: k for s, k in kinds.items() if len(set(k.values())) > 1}
    assert mixed == {}


def test_plan_comes_first_and_the_modes_are_subcommands():
    assert _visible(NNEval.main)[0].name == "plan"
    eval_names = {p.name for p in _visible(NNEval.eval_cmd)}
    assert eval_names == {p.name for p in _visible(NNEval.main)} - {"plan"}
    assert {p.name for p in _visible(NNEval.plan_cmd)} == NNEval.PLANNED
    assert {p.name for p in _visible(AlterNNFN.space_cmd)} == set(AlterNNFN.SPACE_OPTIONS)
    assert {p.name for p in _visible(AlterNNFN.generate_cmd)} == {p.name for p in _visible(AlterNNFN.main)}


def test_ranges_read_as_written():
    assert cli_util.Finite()._describe_range() == ""
    assert cli_util.Finite(min=1)._describe_range() == "x>=1"
    assert cli_util.Seed()._describe_range() == "0<=x<2**63"
    with pytest.raises(click.BadParameter):
        cli_util.Seed().convert(str(2**63), None, None)


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("cpu", "cpu"), ("CUDA", "cuda"), ("cuda:3", "cuda:3")])
def test_device_spelling(value, expected):
    assert cli_util.Device(auto=True).convert(value, None, None) == expected


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "cuda:0,2"])
def test_device_refuses(value):
    with pytest.raises(click.BadParameter, match="is not a device: use auto, cpu, cuda or cuda:N"):
        cli_util.Device(auto=True).convert(value, None, None)


# ---- old spellings: hidden, a one-line notice, the same behaviour -----------------------------------------

def _params(cmd, args):
    return cmd.make_context("test", list(args)).params


def _run(entry, args, capsys):
    with pytest.raises(SystemExit) as exc:
        entry(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_nneval_old_spellings(capsys):
    old = _params(NNEval.main, ["--out", "r", "--order", "file", "--dropout", "0.5"])
    err = capsys.readouterr().err
    assert err.splitlines() == ["--out is deprecated, use --results", "--order is deprecated, use --run-order",
                                "--dropout is deprecated, use --prm-dropout"]
    new = _params(NNEval.main, ["--results", "r", "--run-order", "file", "--prm-dropout", "0.5"])
    assert capsys.readouterr().err == "" and old == new
    with pytest.raises(click.UsageError, match="give one of them"):
        _params(NNEval.main, ["--out", "a", "--results", "b"])


def test_nneval_old_spelling_runs_the_same(tmp_path, capsys):
    (tmp_path / "models").mkdir()
    runs = []
    for flag in ("--results", "--out"):
        runs.append(_run(NNEval.cli, ["--models", str(tmp_path / "models"), flag, str(tmp_path / "r"),
                                      "--no-register", "-q"], capsys))
    (code_new, out_new, err_new), (code_old, out_old, err_old) = runs
    assert (code_old, out_old) == (code_new, out_new)
    assert err_old == "--out is deprecated, use --results\n" + err_new


def test_generator_old_spellings_run_the_same(tmp_path, capsys):
    common = ["--depth", "1", "--columns", "1-2", "--limit", "2", "--dry-run"]
    code, out_new, err_new = _run(AlterNNFN.cli, [*common, "--models", str(tmp_path / "m")], capsys)
    assert code == 0 and "dry run: 2 specs" in out_new and err_new == ""
    code, out_old, err_old = _run(AlterNNFN.cli, [*common, "--out", str(tmp_path / "m")], capsys)
    assert code == 0 and out_old == out_new and err_old == "--out is deprecated, use --models\n"
    assert _params(AlterNNFN.main, ["--new-lemur", "r"])["results"] == _params(AlterNNFN.main, ["--results", "r"])["results"]
    assert capsys.readouterr().err == "--new-lemur is deprecated, use --results\n"
    code, listing_old, err = _run(AlterNNFN.cli, ["--list-space", "--depth", "1"], capsys)
    assert code == 0 and err == "--list-space is deprecated, use nn-gpt-fractal space\n"
    code, listing, err = _run(cli.main, ["space", "--depth", "1"], capsys)
    assert code == 0 and listing == listing_old and "canonical specs" in listing and err == ""
    assert not (tmp_path / "m").exists()


def test_report_old_spelling_runs_the_same(tmp_path, capsys):
    runs = [_run(report.cli, ["--results", str(tmp_path / "none"), flag, str(tmp_path / "rep")], capsys)
            for flag in ("--report", "--out")]
    (code_new, out_new, err_new), (code_old, out_old, err_old) = runs
    assert code_new == code_old == 2 and out_new == out_old
    assert err_old == "--out is deprecated, use --report\n" + err_new
    assert not (tmp_path / "rep").exists()


def test_boundary_old_spellings_draw_the_same_map(tmp_path, capsys):
    small = ["--res", "3", "--steps", "20", "--n-data", "8", "-q"]
    assert boundary.main(["map", *small, "--batch", "4", "--layer-norm", "--maps", str(tmp_path / "new")]) == 0
    assert capsys.readouterr().err == ""
    assert boundary.main(["map", *small, "--batch-size", "4", "--norm", "--out", str(tmp_path / "old")]) == 0
    assert capsys.readouterr().err.splitlines() == ["--batch-size is deprecated, use --batch",
                                                    "--norm is deprecated, use --layer-norm",
                                                    "--out is deprecated, use --maps"]
    assert np.array_equal(np.load(tmp_path / "new" / "map.npy"), np.load(tmp_path / "old" / "map.npy"))
    config = [json.loads((tmp_path / d / "map.json").read_text())["config"] for d in ("new", "old")]
    assert config[0] == config[1] and config[0]["norm"] is True and config[0]["batch_size"] == 4


def test_boundary_cnn_old_spellings(capsys):
    old = _params(boundary.cli.commands["cnn"], ["--model", "m.py", "--out", "o", "--no-amp", "--no-checkpointing"])
    assert capsys.readouterr().err.splitlines() == ["--out is deprecated, use --maps",
                                                    "--no-amp is deprecated, use --amp off",
                                                    "--no-checkpointing is deprecated, use --checkpointing off"]
    new = _params(boundary.cli.commands["cnn"], ["--model", "m.py", "--maps", "o", "--amp", "off",
                                                 "--checkpointing", "off"])
    assert old == new
    assert _params(boundary.cli.commands["cnn"], ["--model", "m.py", "--amp"])["amp"] == "on"  # the old bare flag
