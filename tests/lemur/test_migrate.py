"""`python -m ab.gpt.brute.fract.lemur migrate` on outputs made by the previous code (old_scheme/): every
name moves to nn-dataset's grammar, nothing recorded is lost, a second run changes nothing, and NNEval
then resumes on the migrated folders without retraining or duplicating DB rows."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from ab.gpt.brute.fract.generation.generate import file_intact
from ab.gpt.brute.fract.lemur.names import is_lemur_name, migrated_name
from ab.gpt.brute.fract.lemur.stats import EXTRA
from ab.gpt.brute.fract.generation.manifest import Manifest
from ab.gpt.brute.fract.space.spec import ArchSpec

from tests.eval.evalkit import make_root, run_cli

OLD = Path(__file__).parent / "old_scheme"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.endswith(".lock")}


def db_rows(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        return {"nn": sorted(con.execute("SELECT name, code FROM nn").fetchall()),
                "stat": sorted(con.execute("SELECT nn, epoch, accuracy, duration FROM stat").fetchall()),
                "train_stat": sorted(con.execute("SELECT train_loss, test_loss, train_accuracy FROM train_stat").fetchall())}


@pytest.fixture
def old(tmp_path) -> Path:
    root = make_root(tmp_path / "root")
    shutil.copytree(OLD, root / "old")
    for p in (root / "old").rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


def migrate(root: Path, **kw):
    return run_cli("ab.gpt.brute.fract.lemur", "migrate", "--models", str(root / "old" / "models"), "--results",
                   str(root / "old" / "results"), "--db", str(root / "old" / "ab.nn.db"), cwd=root, **kw)


def test_migrate_renames_everything_and_loses_nothing(old):
    before_files, before_db = snapshot(old / "old"), db_rows(old / "old" / "ab.nn.db")
    old_names = sorted(p.stem for p in (old / "old" / "models").glob("*.py"))
    proc = migrate(old)
    assert proc.stdout.strip() == ("migrated 2 model names: 2 model files, 2 manifest records, 2 stat folders, "
                                   "2 run records, 2 models in the DB")
    after = snapshot(old / "old")
    assert len(after) == len(before_files) and all("_" not in Path(k).stem or k.startswith("results/stat/train/img")
                                                   for k in after)
    new_names = sorted(migrated_name(n) for n in old_names)
    # models: same bytes under the new name; the manifest names what today's code names the spec
    models = old / "old" / "models"
    for o in old_names:
        assert after[f"models/{migrated_name(o)}.py"] == before_files[f"models/{o}.py"]
    manifest = Manifest.load(models)
    assert sorted(r["name"] for r in manifest.valid()) == new_names
    for r in manifest.valid():
        assert r["name"] == ArchSpec.from_dict(r["spec"]).name and file_intact(models, r) and r["file"] == f"{r['name']}.py"
    # stat files: the model renamed, every old value kept (ours now under nn_gpt_fractal)
    for o in old_names:
        n = migrated_name(o)
        for epoch in (1, 2):
            was = json.loads(before_files[f"results/stat/train/img-classification_cifar-10_acc_{o}/{epoch}.json"])
            now = json.loads(after[f"results/stat/train/img-classification_cifar-10_acc_{n}/{epoch}.json"])
            assert len(now) == len(was) == 2
            for w, t in zip(was, now):
                flat = {**{k: v for k, v in t.items() if k != EXTRA}, **t[EXTRA]}
                assert flat == {**w, "model": n} and "seed" in t[EXTRA] and "seed" not in t
        run = json.loads(after[f"results/runs/{n}.json"])
        assert run["name"] == n and run["seeds"] == json.loads(before_files[f"results/runs/{o}.json"])["seeds"]
        assert after[f"results/nn/{n}.py"] == before_files[f"results/nn/{o}.py"]
    # DB: the same results, under the new names only
    now_db = db_rows(old / "old" / "ab.nn.db")
    assert [name for name, _ in now_db["nn"]] == new_names and all(is_lemur_name(s[0]) for s in now_db["stat"])
    assert [s[1:] for s in sorted(now_db["stat"], key=lambda s: s[1:])] == \
        [s[1:] for s in sorted(before_db["stat"], key=lambda s: s[1:])]
    assert now_db["train_stat"] == before_db["train_stat"]
    # idempotent: a second run finds nothing and changes nothing
    proc = migrate(old)
    assert proc.stdout.strip().startswith("nothing to migrate") and snapshot(old / "old") == after
    # NNEval resumes on the migrated folders: nothing retrained, no DB row added
    proc = run_cli("ab.gpt.NNEval", "--models", str(models), "--results", str(old / "old" / "results"), "--db",
                   str(old / "old" / "ab.nn.db"), "-q", cwd=old)
    assert "0 evaluated" in proc.stdout and "2 already done" in proc.stdout and "0 new DB rows" in proc.stdout
    assert db_rows(old / "old" / "ab.nn.db") == now_db


def test_migrate_resumes_after_an_interruption(old):
    """A migration stopped after the model files were renamed continues from there."""
    models = old / "old" / "models"
    for p in models.glob("*.py"):
        p.rename(models / f"{migrated_name(p.stem)}.py")  # as if killed after the first step
    proc = migrate(old)
    assert "2 manifest records, 2 stat folders, 2 run records, 2 models in the DB" in proc.stdout
    assert all(is_lemur_name(r["name"]) for r in Manifest.load(models).valid())


def test_migrate_bad_input_is_one_line_and_exit_2(old):
    bad = next((old / "old" / "results" / "stat" / "train").glob("*/1.json"))
    bad.write_text("[{\"accuracy\": 0.2,")
    proc = migrate(old, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and str(bad) in proc.stderr
    assert bad.read_text() == "[{\"accuracy\": 0.2,"
