"""Study files: what a valid one becomes, and that every mistake is one line on stderr with exit code 2."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ab.gpt.brute.fract.space.spec import ArchSpec
from ab.gpt.brute.fract.study import sample
from ab.gpt.brute.fract.study.__main__ import cli
from ab.gpt.brute.fract.study.spec import StudyError, load
from tests.conftest import run_module

GOOD = """
[study]
name = "toy"
[space]
size = 8
min_level_count = 1
depth = [1, 2]
columns = [1, 2]
channels = [4, 8]
conv = ["conv3x3"]
norm = ["none", "bn"]
act = ["relu"]
order = ["conv-norm-act"]
dropout = [0.0, "larsson"]
join = ["mean"]
[protocol]
data = "data"
epochs = 2
[protocol.halving]
rungs = [1]
eta = 2
[protocol.seeds]
count = 2
top = 1
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "study.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_valid_file_parses_to_the_declared_study(tmp_path):
    s = load(write(tmp_path, GOOD))
    assert s.name == "toy" and s.size == 8 and s.generator == "stratified"
    assert s.dimensions["channels"] == ((4, 8),) and s.dimensions["dropout"] == (0.0, "larsson")
    assert s.protocol.halving.rungs == (1,) and s.protocol.halving.eta == 2 and s.protocol.seeds == 2
    assert s.data_dir() == (tmp_path / "data").resolve()  # relative to the study file
    assert s.work == tmp_path / "work"
    assert load(tmp_path).path == s.path  # the folder works too


@pytest.mark.parametrize("change, expected", [
    (("[protocol]\n", "[protocol]\nspeed = 3\n"), "[protocol] has an unknown key 'speed'"),
    (('data = "data"\n', ""), "[protocol] data is missing"),
    (("rungs = [1]", "rungs = [2]"), "[protocol.halving] rungs = [2]"),
    (("depth = [1, 2]", "depth = 2"), "[space] depth = 2: give a non-empty list"),
    (("top = 1", "top = -1"), "[protocol.seeds] top = -1"),
    (('name = "toy"', ""), "[study] name is missing"),
    (("[study]", "[studdy]"), "unknown section [studdy]"),
    (("epochs = 2", "epochs = 2\n[questions]\nask = [\"why\"]"), "[questions] ask = ['why']"),
    (("size = 8", "size = 8 8"), "is not valid TOML"),
    (("epochs = 2", "epochs = 2\npolicies = \"fast\""), "[protocol] policies = 'fast': choose from off, auto"),
])
def test_mistakes_are_one_line_naming_the_key(tmp_path, change, expected, capsys):
    bad = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(StudyError) as e:
        load(bad)
    assert expected in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SystemExit) as code:
        cli(["plan", str(bad)])
    assert code.value.code == 2
    out = capsys.readouterr()
    assert out.err.strip().count("\n") == 0 and expected in out.err and out.out == ""
    assert not (tmp_path / "work").exists()  # nothing was generated


def test_unknown_layer_option_is_a_one_line_error_from_the_command(tmp_path):
    p = write(tmp_path, GOOD.replace('act = ["relu"]', 'act = ["relu", "swishy"]'))
    res = run_module("ab.gpt.brute.fract.study", "run", str(p))
    assert res.returncode == 2 and "unknown act option 'swishy'" in res.stderr
    assert res.stderr.strip().count("\n") == 0


def test_sample_is_seeded_and_covers_levels(tmp_path):
    s = load(write(tmp_path, GOOD))
    a, b = sample.propose(s), sample.propose(s)
    assert [x.spec_hash for x in a] == [x.spec_hash for x in b] and len(a) == 8
    counts = sample.check_coverage(s, a)
    assert set(counts["depth"]) == {1, 2} and set(counts["columns"]) == {1, 2}  # stratified over (N, C)
    strict = load(write(tmp_path, GOOD.replace("min_level_count = 1", "min_level_count = 5")))
    with pytest.raises(StudyError, match="below min_level_count = 5"):
        sample.check_coverage(strict, a)


def test_levels_read_the_built_architecture():
    spec = ArchSpec(depth=3, columns=2, channels=(8, 16, 32), layers=("bn", "gelu", "conv3x3", "dropout"),
                    block_dropout=(0.0, 0.2, 0.4), join="max", local_drop=0.15, global_drop=0.0)
    lv = sample.levels(spec)
    assert lv == {"depth": 3, "columns": 2, "norm": "bn", "act": "gelu", "order": "norm/act-first",
                  "dropout": "larsson", "join": "max", "drop_path": "local"}
    one = ArchSpec(depth=1, columns=1, channels=(8,), layers=("conv3x3", "relu"), join="mean", local_drop=0.0,
                   global_drop=0.0)
    assert sample.levels(one)["join"].startswith("n/a") and sample.levels(one)["drop_path"].startswith("n/a")


def test_pairs_match_depth_and_convolutions(tmp_path):
    s = load(write(tmp_path, GOOD))
    specs = sample.propose(s)
    pairs = sample.pairs(s, specs)
    cells = {(p.fractal.depth, p.fractal.columns) for p in pairs}
    assert cells == {(n, 2) for n in (1, 2) if any(x.depth == n and x.columns == 2 for x in specs)}
    for p in pairs:
        n, c = p.fractal.depth, p.fractal.columns
        assert p.depth_twin.kind == p.params_twin.kind == "plain"
        assert p.depth_twin.plain_layers == n * 2 ** (c - 1)  # the deepest path's convolutions
        assert p.params_twin.plain_layers == n * (2 ** c - 1)  # all of the fractal's convolutions
        assert p.depth_twin.layers == p.fractal.layers and p.params_twin.channels == p.fractal.channels
        assert p.params_twin.block_dropout == p.fractal.block_dropout
