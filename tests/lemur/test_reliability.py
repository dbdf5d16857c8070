"""Bad DB files and stat files: a one-line error naming the file and what to do, exit 2,
nothing lost; one corrupt stat file does not block the others' registration."""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ab.gpt.brute.fract.lemur.register import check_db_file
from ab.gpt.brute.fract.report.load import read_db
from tests.eval.evalkit import REPO, make_root, run_cli

OLD = Path(__file__).parent / "old_scheme"


@pytest.fixture
def done(tmp_path) -> Path:
    """A LEMUR root with two evaluated models (the old-scheme outputs, migrated) and no DB."""
    root = make_root(tmp_path / "root")
    shutil.copytree(OLD / "models", root / "models")
    shutil.copytree(OLD / "results", root / "results")
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    run_cli("ab.gpt.brute.fract.lemur", "migrate", "--models", str(root / "models"), "--results",
            str(root / "results"), cwd=root)
    return root


def nneval(root: Path, db: Path, cifar: Path, prefix: list[str] = (), **kw):
    args = ["--models", str(root / "models"), "--results", str(root / "results"), "--db", str(db), "-q",
            "--data-dir", str(cifar)]
    if not prefix:
        return run_cli("ab.gpt.NNEval", *args, cwd=root, check=False, **kw)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*prefix, sys.executable, "-m", "ab.gpt.NNEval", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damaged(kind: str, path: Path) -> Path:
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(b"this is not an SQLite file\n" * 500)
    else:  # truncated: the first 100 kB of a real LEMUR DB
        path.write_bytes((OLD / "ab.nn.db").read_bytes()[:100_000])
    return path


@pytest.mark.parametrize("kind", ["zero-byte", "corrupt", "truncated"])
def test_a_damaged_db_is_one_line_exit_2_and_untouched(done, cifar_dir, kind):
    db = damaged(kind, done / "bad.db")
    before = digest(db)
    (done / "results" / "runs").rename(done / "results" / "runs.away")  # so there is training to do
    proc = nneval(done, db, cifar_dir)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: ") and str(db) in line and "aside" in line
    assert digest(db) == before and not (done / "results" / "runs").exists()  # nothing trained, nothing written


def test_a_read_only_db_is_one_line_exit_2_and_untouched(done, cifar_dir):
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap is needed (make system-deps installs it)")
    folder = done / "dbdir"
    folder.mkdir()
    db = folder / "ab.nn.db"
    shutil.copy(OLD / "ab.nn.db", db)
    before = digest(db)
    # a read-only mount: read-only for root too (file modes are not, and CI may run as root)
    proc = nneval(done, db, cifar_dir, prefix=["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(folder), str(folder)])
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and str(db) in line and "read-only" in line
    assert digest(db) == before


def test_a_corrupt_stat_file_is_reported_and_the_rest_is_registered(done, cifar_dir):
    names = sorted(p.stem for p in (done / "results" / "nn").glob("*.py"))
    bad = done / "results" / "stat" / "train" / f"img-classification_cifar-10_acc_{names[0]}" / "2.json"
    bad.write_text(bad.read_text()[:200])  # cut short
    before = digest(bad)
    proc = nneval(done, done / "new.db", cifar_dir)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and str(bad) in errors[0] and "restore it" in errors[0]
    assert "2 already done" in proc.stdout  # the sweep itself went on
    with sqlite3.connect(done / "new.db") as con:
        per_model = dict(con.execute("SELECT nn, COUNT(*) FROM stat GROUP BY nn").fetchall())
    assert per_model == {names[1]: 4}  # the other model: 2 epochs x 2 seeds
    assert digest(bad) == before and (done / "results" / "runs" / f"{names[0]}.json").exists()


KILLED_WRITER = """import os, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA cache_size = 1")  # pages spill to the file mid-transaction: the journal is hot
con.execute("BEGIN")
for k in range(300):
    con.execute("INSERT INTO nn (name, code, id) VALUES (?, ?, ?)", (f"half-written-{k}", "x" * 4000, str(k)))
os.kill(os.getpid(), 9)
"""


def test_a_writer_killed_mid_transaction_leaves_a_db_the_next_run_opens(tmp_path):
    db = tmp_path / "ab.nn.db"
    shutil.copy(OLD / "ab.nn.db", db)
    with sqlite3.connect(db) as con:
        before = con.execute("SELECT COUNT(*) FROM nn").fetchone()[0]
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], capture_output=True)
    assert proc.returncode == -9 and Path(f"{db}-journal").stat().st_size > 0
    check_db_file(db)  # a read-only check could not roll the journal back and called the DB unreadable
    assert not Path(f"{db}-journal").exists()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM nn").fetchone()[0] == before
    rows, registered = read_db(db, None)
    assert rows and registered
