"""The generator CLI end to end: output, manifest, idempotence, resume, bad input."""
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from ab.gpt.brute.fract.space.families import LayerFamily, LayerOption
from ab.gpt.brute.fract.generation import handlers
from ab.gpt.brute.fract.generation import generate as gen
from ab.gpt.brute.fract.generation.generate import generate, validation_jails
from ab.gpt.brute.fract.space.hookspecs import hookimpl
from ab.gpt.brute.fract.generation.manifest import Manifest
from ab.gpt.brute.fract.space.registry import build_registry
from ab.gpt.brute.fract.space.space import Space

GEN = "ab.gpt.brute.fract.AlterNNFN"
FRACTAL = "ab.gpt.brute.fract.cli"
SMALL = ["--depth", "1-2", "--columns", "1-3", "--channels", "8,16", "-q"]


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_generates_valid_distinct_models_with_a_manifest(cli, tmp_path):
    out = tmp_path / "models"
    r = cli(GEN, *SMALL, "--limit", "6", "--generator", "stratified", "--models", str(out))
    assert r.returncode == 0, r.stderr
    recs = manifest(out)
    valid = [x for x in recs if x["status"] == "valid"]
    assert len(valid) == 6 and len({x["signature"] for x in valid}) == 6
    files = sorted(p.stem for p in out.glob("*.py"))
    assert files == sorted(x["name"] for x in valid)
    for x in valid:
        assert x["params"] > 0 and x["flops"] > 0 and x["spec"]["channels"][0] == 8
        assert x["name"].startswith(f"FractalNet-N{x['spec']['depth']}-C{x['spec']['columns']}-")
    assert "6 new valid models" in r.stdout


def test_the_generation_driver_never_imports_torch(repo, tmp_path):
    """Models are built and checked in the jails only: the driver renders, checks statically and writes, so
    it spares every run torch's import. The handlers it names are functions its jails can import."""
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
            f"sys.argv = ['AlterNNFN', *{SMALL!r}, '--limit', '1', '--models', {str(tmp_path / 'm')!r}]\n"
            "runpy.run_module('ab.gpt.brute.fract.AlterNNFN', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "1 new valid models" in r.stdout, r.stderr
    assert r.stderr.strip().endswith("torch imported: False"), r.stderr
    for name in (handlers.VALIDATE, *handlers.WARM):
        module, function = name.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_relative_output_folder(cli, tmp_path):
    r = cli(GEN, *SMALL, "--limit", "2", "--models", "rel/models", cwd=tmp_path)
    assert r.returncode == 0 and "2 new valid models" in r.stdout, r.stdout + r.stderr
    assert len(list((tmp_path / "rel" / "models").glob("*.py"))) == 2


def test_rerun_is_idempotent_and_never_wipes(cli, tmp_path):
    out = tmp_path / "models"
    assert cli(GEN, *SMALL, "--limit", "4", "--models", str(out)).returncode == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.py")}
    (out / "notes.txt").write_text("mine")
    r = cli(GEN, *SMALL, "--limit", "4", "--models", str(out))
    assert r.returncode == 0 and "0 new valid models" in r.stdout and "4 already done" in r.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.py")} == stamps
    assert (out / "notes.txt").read_text() == "mine"
    r = cli(GEN, *SMALL, "--limit", "7", "--models", str(out))  # a larger limit adds only the difference
    assert "3 new valid models" in r.stdout
    assert len(list(out.glob("*.py"))) == 7 and len(manifest(out)) == 7


def test_edited_or_deleted_model_is_regenerated(cli, tmp_path):
    out = tmp_path / "models"
    cli(GEN, *SMALL, "--limit", "3", "--models", str(out))
    victim, edited = sorted(out.glob("*.py"))[:2]
    original = edited.read_text()
    victim.unlink()
    edited.write_text(original + "\n# hand edit\n")
    r = cli(GEN, *SMALL, "--limit", "3", "--models", str(out))
    assert r.returncode == 0
    assert victim.exists() and edited.read_text() == original


def test_interrupted_run_resumes_without_redoing_or_losing_work(repo, tmp_path):
    out = tmp_path / "models"
    cmd = [sys.executable, "-m", GEN, "--depth", "1-3", "--columns", "1-4", "--channels", "8,16,16", "-q",
           "--limit", "60", "--models", str(out)]
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not (out / "manifest.jsonl").exists()
                                      or len((out / "manifest.jsonl").read_text().splitlines()) < 20):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {x["name"] for x in manifest(out)}
    assert 20 <= len(before)
    (out / ".staging").mkdir(exist_ok=True)
    (out / ".staging" / "tmpk3x9.py").write_text("half-written")  # a killed run may leave such files
    r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    recs = manifest(out)
    names = [x["name"] for x in recs]
    assert len(names) == len(set(names))  # nothing recorded twice
    assert before <= set(names) and len(before) < 60  # killed mid-run, then finished
    assert len([x for x in recs if x["status"] == "valid"]) == 60
    assert f"{len(before)} already done" in r.stdout or f"{len(before) - 1} already done" in r.stdout
    valid = {x["name"] for x in recs if x["status"] == "valid"}
    assert {p.stem for p in out.glob("*.py")} == valid  # no stray or missing files
    assert not (out / ".staging").exists() or not any((out / ".staging").iterdir())


def test_truncated_last_manifest_line_is_dropped_and_redone(cli, tmp_path):
    out = tmp_path / "models"
    cli(GEN, *SMALL, "--limit", "3", "--models", str(out))
    text = (out / "manifest.jsonl").read_text()
    (out / "manifest.jsonl").write_text(text[: text.rstrip("\n").rfind("\n") + 40])  # torn last record
    r = cli(GEN, *SMALL, "--limit", "3", "--models", str(out))
    assert r.returncode == 0, r.stderr
    assert len(manifest(out)) == 3


def test_dry_run_and_listing_write_nothing(cli, tmp_path):
    out = tmp_path / "models"
    r = cli(GEN, *SMALL, "--dry-run", "--limit", "5", "--models", str(out))
    assert r.returncode == 0 and "dry run: 5 specs" in r.stdout and not out.exists()
    r = cli(FRACTAL, "space")
    assert "canonical specs: 2016" in r.stdout and "depth" in r.stdout and "join" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--depth", "0"], "depth 0 is out of range"),
    (["--columns", "-1"], "columns -1 is out of range"),
    (["--conv", "conv9x9"], "unknown conv option 'conv9x9'"),
    (["--act", "swish"], "unknown act option 'swish'"),
    (["--dropout", "1.5"], "dropout 1.5 is outside [0, 1)"),
    (["--depth", "abc"], "not a list of integers"),
    (["--generator", "nope"], "unknown generator 'nope'"),
    (["--limit", "0"], "--limit"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, args, message):
    out = tmp_path / "models"
    r = cli(GEN, *args, "--models", str(out))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and message in r.stderr
    assert not out.exists()


def test_unwritable_output_and_corrupted_manifest(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli(GEN, *SMALL, "--limit", "1", "--models", str(blocker / "sub"))
    assert r.returncode == 2 and "not writable" in r.stderr and r.stderr.count("\n") == 1
    out = tmp_path / "models"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"name": "a"}\nnot json\n')
    r = cli(GEN, *SMALL, "--limit", "1", "--models", str(out))
    assert r.returncode == 2 and "corrupted at line 1" in r.stderr and r.stderr.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]


def test_second_run_into_a_busy_folder_is_refused(cli, tmp_path):
    import fcntl
    out = tmp_path / "models"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a running generation holds
    try:
        r = cli(GEN, *SMALL, "--limit", "1", "--models", str(out))
    finally:
        os.close(fd)
    assert r.returncode == 2 and "another generation run is writing to" in r.stderr
    assert r.stderr.count("\n") == 1 and list(out.iterdir()) == []
    r = cli(GEN, *SMALL, "--limit", "1", "--models", str(out))
    assert r.returncode == 0, r.stderr


class BrokenLayers:
    """A plugin whose options render code that fails in different ways."""

    @hookimpl
    def fractal_layer_families(self):
        return [LayerFamily("broken", (
            LayerOption("badsyntax", "conv", "nn.Conv2d({c_in}, {c_out}, kernel_size=3"),
            LayerOption("badshape", "conv", "nn.Conv2d({c_in}, 7, kernel_size=3, padding=1)"),
            LayerOption("badimport", "act", "nn.ReLU()", helper="import os"),
        ))]


def test_invalid_models_are_reported_and_never_listed_valid(tmp_path):
    reg = build_registry(third_party=False, extra={"broken": BrokenLayers()})
    space = Space(depth=(2,), columns=(2,), channels=((8, 16),), conv=("conv3x3", "badsyntax", "badshape"),
                  norm=("none",), act=("relu", "badimport"), order=("conv-norm-act",), dropout=(0.0,),
                  join=("mean",))
    out = tmp_path / "models"
    outcome = generate(iter(space), reg, out, limit=None, generator="test", workers=1)
    recs = {r["name"]: r for r in Manifest.load(out).records.values()}
    valid = [n for n, r in recs.items() if r["status"] == "valid"]
    assert len(valid) == 1 and "conv3x3-relu" in valid[0]
    reasons = " | ".join(r["reason"] for r in recs.values() if r["status"] == "invalid")
    assert "syntax error" in reasons and "import of 'os' is not allowed" in reasons
    assert "RuntimeError: Invalid channel dimensions" in reasons  # the shape error from the jailed forward
    assert sorted(p.stem for p in out.glob("*.py")) == valid
    assert len(outcome.invalid) == 5


def test_a_few_validations_share_one_jail(registry, tmp_path, monkeypatch):
    """A jail costs about 2.5 s of CPU to start: a run with a few models to validate starts one, whatever its
    workers; the proposals' count (or the limit) decides, and a stream of unknown length gets every worker."""
    started = []

    class Counting(gen.LocalExecutor):
        def __init__(self, workers, *args, **kwargs):
            started.append(workers)
            super().__init__(workers, *args, **kwargs)

    monkeypatch.setattr(gen, "LocalExecutor", Counting)
    specs = list(Space.default(registry).with_values(depth=(1,), columns=(1, 2), channels=((8,),)))[:3]
    outcome = generate(specs, registry, tmp_path / "m", limit=None, generator="t", workers=2)
    assert len(outcome.accepted) == 3 and started == [1]
    assert [validation_jails(8, n) for n in (1, 20, 21, 60, 1000, math.inf)] == [1, 1, 2, 3, 8, 8]


def test_no_proposal_is_requested_beyond_the_limit(registry, tmp_path):
    space = Space.default(registry).with_values(depth=(1,), columns=(1, 2), channels=((8,),))
    pulled = []

    def proposals():
        for spec in space:
            pulled.append(spec.name)
            yield spec

    outcome = generate(proposals(), registry, tmp_path / "m", limit=3, generator="t", workers=2)
    assert len(outcome.accepted) == 3 and len(pulled) == 3
