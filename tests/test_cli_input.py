"""Bad command-line input in every CLI: one line on stderr naming the problem, exit code 2, nothing written.

The CLIs run in this process (click parses before any work starts), so each case is quick."""
from __future__ import annotations

import numpy as np
import click
import pytest

from ab.gpt import NNEval
from ab.gpt.brute.fract import AlterNNFN, cli
from ab.gpt.brute.fract.util import cli as cli_util
from ab.gpt.brute.fract.boundary import __main__ as boundary
from ab.gpt.brute.fract.boundary import config as boundary_config
from ab.gpt.brute.fract.lemur import __main__ as lemur
from ab.gpt.brute.fract.report import __main__ as report

COMMANDS = {"NNEval": NNEval.main, "AlterNNFN": AlterNNFN.main, "report": report.main, "boundary": boundary.cli,
            "lemur": lemur.main, "nn-gpt-fractal": cli.group}


def _params(cmd: click.Command, path: str):
    for p in cmd.params:
        yield f"{path} {p.opts[0] if p.opts else p.name}", p
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _params(cmd.get_command(ctx, name), f"{path} {name}")


ALL_PARAMS = [item for name, cmd in COMMANDS.items() for item in _params(cmd, name)]


def test_every_float_option_is_finite_and_every_path_refuses_empty():
    floats = [n for n, p in ALL_PARAMS if isinstance(p.type, click.types.FloatParamType)]
    assert len(floats) > 20  # NNEval, AlterNNFN --timeout, the boundary knobs and ranges
    assert [n for n, p in ALL_PARAMS if isinstance(p.type, click.types.FloatParamType)
            and not isinstance(p.type, cli_util.Finite)] == []
    paths = [n for n, p in ALL_PARAMS if isinstance(p.type, click.Path)]
    assert len(paths) > 10
    assert [n for n, p in ALL_PARAMS if isinstance(p.type, click.Path) and not isinstance(p.type, cli_util.Path)] == []
    assert [n for n, p in ALL_PARAMS if n.endswith("--threads") and not isinstance(p.type, cli_util.Threads)] == []


def _run_click(entry, args, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        entry(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _run_boundary(args, capsys) -> str:
    rc = boundary.main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("args, words", [
    (["--lr", "nan"], ["--lr", "'nan' is not a finite number"]),
    (["--lr", "inf"], ["--lr", "finite"]),
    (["--momentum", "nan"], ["--momentum", "finite"]),
    (["--prm-dropout", "NaN"], ["--prm-dropout", "finite"]),
    (["--memory-gb", "nan"], ["--memory-gb", "finite"]),
    (["--memory-gb", "inf"], ["--memory-gb", "finite"]),
    (["--timeout", "inf"], ["--timeout", "finite"]),
    (["--timeout", "-inf"], ["--timeout"]),
    (["--threads", "0"], ["--threads", "not in 1.."]),
    (["--threads", "100000"], ["--threads", "CPU"]),
    (["--models", ""], ["--models", "empty path"]),
    (["--results", ""], ["--results", "empty path"]),
    (["--db", ""], ["--db", "empty path"]),
    (["--limit", "-1"], ["--limit"]),
    (["--device", "gpu"], ["--device", "is not a device"]),
    (["--eta", "3"], ["--eta", "needs --schedule halving"]),
    (["--rungs", "1"], ["--rungs", "needs --schedule halving"]),
    (["--schedule", "halving", "--eta", "1"], ["--eta", "1 is not in the range x>=2"]),
    (["--schedule", "halving", "--min-keep", "0"], ["--min-keep"]),
    (["--schedule", "halving", "--rungs", "3,1"], ["--rungs", "increasing positive epoch counts"]),
    (["--schedule", "halving", "--rungs", "1,x"], ["--rungs", "not a list of epoch counts"]),
    (["--schedule", "halving", "--rungs", "1,9", "--epochs", "3"], ["--rungs", "goes past --epochs 3"]),
    (["--schedule", "fast"], ["--schedule"]),
])
def test_nneval_rejects(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _run_click(NNEval.cli, args + ["--no-register"], capsys)
    assert all(w in err for w in words), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, words", [
    (["--eta", "3"], ["--eta", "needs --schedule halving"]),
    (["--rungs", "1"], ["--rungs", "needs --schedule halving"]),
    (["--min-keep", "2"], ["--min-keep", "needs --schedule halving"]),
    (["--schedule", "halving", "--eta", "1"], ["--eta", "1 is not in the range x>=2"]),
    (["--schedule", "halving", "--min-keep", "0"], ["--min-keep"]),
    (["--schedule", "halving", "--rungs", "3,1"], ["--rungs", "increasing positive epoch counts"]),
    (["--schedule", "halving", "--rungs", "1,9", "--epochs", "3"], ["--rungs", "goes past --epochs 3"]),
    (["--address", "1.2.3.4:6379"], ["--address", "needs --executor ray"]),
])
def test_nneval_plan_rejects_the_same(args, words, tmp_path, monkeypatch, capsys):
    """--plan checks the schedule's options before planning, with the same one-line errors as a sweep."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # a models folder: the error must come from the option, not the folder
    err = _run_click(NNEval.cli, args + ["--plan", "--models", str(tmp_path / "models")], capsys)
    assert all(w in err for w in words), err
    assert [p.name for p in tmp_path.iterdir()] == ["models"] and not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize("args, words", [
    (["--timeout", "nan"], ["--timeout", "finite"]),
    (["--dropout", "0,nan"], ["--dropout", "finite numbers"]),
    (["--local-drop", "inf"], ["--local-drop", "finite numbers"]),
    (["--global-drop", ","], ["--global-drop"]),
    (["--depth", ""], ["--depth", "not a list of integers"]),
    (["--depth", "1-99999999999"], ["--depth", "more than 10000 values"]),
    (["--channels", "8,1-99999999999"], ["--channels", "more than 10000 values"]),
    (["--channels", ""], ["--channels"]),
    (["--conv", ""], ["conv", "no values"]),
    (["--models", ""], ["--models", "empty path"]),
    (["--workers", "-2"], ["--workers"]),
    (["--seed", "-1"], ["--seed"]),
])
def test_generator_rejects(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _run_click(AlterNNFN.cli, args + ["--dry-run"], capsys)
    assert all(w in err for w in words), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["--results", ""], ["--report", ""], ["--db", ""], ["--models", ""]])
def test_report_rejects_empty_paths(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _run_click(report.cli, args, capsys)
    assert "empty path" in err and args[0] in err


@pytest.mark.parametrize("args, words", [
    (["map", "--x-lo", "nan"], ["--x-lo", "finite"]),
    (["map", "--y-hi", "inf"], ["--y-hi", "finite"]),
    (["map", "--lr0", "nan"], ["--lr0", "finite"]),
    (["map", "--momentum", "nan"], ["--momentum", "finite"]),
    (["map", "--data-ratio", "inf"], ["--data-ratio", "finite"]),
    (["map", "--res", "1000000"], ["1000000x1000000 map", "GiB", "lower --res"]),
    (["map", "--res-x", "10000000000", "--res-y", "2"], ["GiB", "lower --res"]),
    (["map", "--steps", "2000000000"], ["GiB", "lower --steps"]),
    (["map", "--name", "../escape"], ["--name", "plain file name"]),
    (["map", "--name", ""], ["--name", "plain file name"]),
    (["map", "--maps", ""], ["--maps", "empty path"]),
    (["map", "--device", "foo"], ["--device", "use auto, cpu, cuda or cuda:N"]),
    (["map", "--seed", "-5"], ["--seed"]),
    (["map", "--width", "100000000"], ["GiB", "--width"]),
    (["zoom", "--factor", "inf"], ["--factor", "finite"]),
    (["zoom", "--centre-x", "nan", "--centre-y", "1"], ["--centre-x", "finite"]),
    (["zoom", "--ms", "-5"], ["--ms"]),
    (["cnn", "--model", "m.py", "--momentum", "nan"], ["--momentum", "finite"]),
    (["cnn", "--model", "m.py", "--lr-range", "0.1", "inf"], ["--lr-range", "finite"]),
    (["cnn", "--model", "m.py", "--timeout", "nan"], ["--timeout", "finite"]),
    (["cnn", "--model", ""], ["--model", "empty path"]),
    (["cnn", "--model", "m.py", "--seed", "-1"], ["--seed"]),
])
def test_boundary_rejects(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if args[0] in ("map", "zoom"):
        args = args + ["--maps", "o"] if "--maps" not in args else args
    err = _run_boundary(args, capsys)
    assert all(w in err for w in words), err
    assert list(tmp_path.iterdir()) == []


def test_map_memory_check_is_relative_to_available_memory(monkeypatch):
    monkeypatch.setattr(boundary_config, "available_memory", lambda: 1 << 20)  # 1 MiB
    boundary_config.check_memory((64, 64))  # 0.5 MiB of arrays fits
    with pytest.raises(ValueError, match="200x200 map needs about 0.0 GiB.*lower --res"):
        boundary_config.check_memory((200, 200))  # 4.9 MiB does not


def test_cnn_map_too_big_for_memory(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _run_boundary(["cnn", "--model", str(tiny_model), "--res", "1000000", "--maps", "o"], capsys)
    assert "1000000x1000000 map" in err and "GiB" in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_model(tmp_path_factory):
    """A valid generated model file (the generator's own output)."""
    out = tmp_path_factory.mktemp("models")
    with pytest.raises(SystemExit) as exc:
        AlterNNFN.cli(["--depth", "1", "--columns", "1", "--channels", "8", "--conv", "conv3x3", "--norm", "none",
                       "--act", "relu", "--order", "conv-norm-act", "--dropout", "0", "--limit", "1", "-q",
                       "--models", str(out)])
    assert exc.value.code == 0
    return next(out.glob("*.py"))


def _write_maps(d):
    np.save(d / "ok.npy", np.random.default_rng(0).standard_normal((16, 16)))
    good = (d / "ok.npy").read_bytes()
    files = {
        "text.npy": b"not an array\n",
        "empty.npy": b"",
        "truncated.npy": good[: len(good) // 2],
        "notes.txt": b"hello",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    np.save(d / "line.npy", np.arange(10.0))
    np.save(d / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.savez(d / "arch.npz", a=np.zeros((4, 4)))
    np.save(d / "objects.npy", np.array([[{}, {}], [{}, {}]], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("name, words", [
    ("text.npy", ["text.npy", "not a readable .npy map array", "not a plain .npy array"]),
    ("empty.npy", ["empty.npy", "not a readable .npy map array"]),
    ("truncated.npy", ["truncated.npy", "not a readable .npy map array"]),
    ("notes.txt", ["notes.txt", "not a readable .npy map array"]),
    ("line.npy", ["line.npy", "shape (10,)", "2-D numeric map"]),
    ("strings.npy", ["strings.npy", "2-D numeric map"]),
    ("arch.npz", ["arch.npz", ".npz archive"]),
    ("objects.npy", ["objects.npy", "pickled objects"]),  # pickled objects are never loaded
])
def test_dimension_rejects_what_is_not_a_map(name, words, tmp_path, capsys):
    _write_maps(tmp_path)
    err = _run_boundary(["dimension", str(tmp_path / "ok.npy"), str(tmp_path / name)], capsys)
    assert all(w in err for w in words), err


def test_dimension_of_a_good_map_still_works(tmp_path, capsys):
    _write_maps(tmp_path)
    assert boundary.main(["dimension", str(tmp_path / "ok.npy")]) == 0
    assert '"images": 1' in capsys.readouterr().out


def test_threads_bounded_by_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(cli_util.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    t = cli_util.Threads()
    assert t.convert("2", None, None) == 2
    with pytest.raises(click.BadParameter, match="3 is not in 1..2: .* 2 CPU"):
        t.convert("3", None, None)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_finite_refuses_non_finite_numbers(value):
    with pytest.raises(click.BadParameter, match="finite"):
        cli_util.Finite(min=0).convert(value, None, None)
    assert cli_util.Finite(min=0).convert("1e300", None, None) == 1e300


def test_map_into_a_folder_of_another_map_is_one_line(tmp_path, capsys):
    small = ["--res", "2", "--steps", "20", "--quiet", "--maps", str(tmp_path / "o")]
    assert boundary.main(["map", *small]) == 0
    capsys.readouterr()
    err = _run_boundary(["map", *small, "--width", "4"], capsys)
    assert "holds tiles of different settings" in err


def test_cnn_map_with_a_relative_out_folder(tiny_model, cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = boundary.main(["cnn", "--model", str(tiny_model), "--res", "2", "--steps", "2", "--window", "1",
                        "--train-limit", "32", "--workers", "1", "--data-dir", str(cifar_dir), "--maps", "rel", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert np.load(tmp_path / "rel" / "map.npy").shape == (2, 2)
