"""Reading results: partial and still-running sweeps, bad input, the LEMUR DB. Synthetic files, no training."""
import json
import math
import sqlite3

import pytest

from ab.gpt.brute.fract.lemur.stats import trial_figures
from ab.gpt.brute.fract.report.build import build_report
from ab.gpt.brute.fract.report.load import ResultsError, load_results
from ab.gpt.brute.fract.space.spec import ArchSpec

from .sweep import run_module

SPEC = ArchSpec(depth=1, columns=2, channels=(8,), layers=("conv3x3", "bn", "relu"))


def run_record(name, accs, status="trained", spec=SPEC):
    seeds = [{"seed": i, "status": status, "message": "", "params": 1000, "flops": 2e6,
              "epochs": [{"epoch": e + 1, "accuracy": a - 0.05 * (1 - e), "train_loss": 2.0 - e, "val_loss": 2.1,
                          "train_accuracy": 0.3, "epoch_time_s": 1.5, "images_per_s": 100, "peak_memory_mb": 40}
                         for e in range(2)]}
             for i, a in enumerate(accs)]
    return {"name": name, "status": status, "message": "", "seeds": seeds, "spec": spec.to_dict() if spec else None,
            "config": {"lr": 0.01, "epochs": 2}}


def write_run(root, rec):
    (root / "runs").mkdir(parents=True, exist_ok=True)
    (root / "runs" / f"{rec['name']}.json").write_text(json.dumps(rec))


def test_missing_or_empty_results_say_what_to_do(tmp_path):
    with pytest.raises(ResultsError, match="does not exist: run NNEval first"):
        load_results(tmp_path / "nope")
    (tmp_path / "runs").mkdir()
    with pytest.raises(ResultsError, match="no results in .*expected runs/<Model>.json"):
        load_results(tmp_path)


def test_only_corrupted_files_is_an_error_naming_one(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "A.json").write_text('{"name": "A", "seeds": [')
    with pytest.raises(ResultsError, match=r"unreadable: skipped runs/A.json"):
        load_results(tmp_path)


def test_corrupted_files_are_skipped_with_a_warning(tmp_path):
    write_run(tmp_path, run_record(SPEC.name, [0.5, 0.6]))
    (tmp_path / "runs" / "B.json").write_text("not json")
    (tmp_path / "runs" / "C.json").write_text("[1, 2]")
    bad_stat = tmp_path / "stat" / "train" / "img-classification_cifar-10_acc_D" / "1.json"
    bad_stat.parent.mkdir(parents=True)
    bad_stat.write_text('{"accuracy": 0.1}')
    r = load_results(tmp_path)
    assert list(r.models["model"]) == [SPEC.name]
    assert len(r.warnings) == 3 and any("runs/B.json" in w for w in r.warnings)
    m = r.models.iloc[0]
    assert m["acc_mean"] == pytest.approx(0.55) and m["acc_n"] == 2 and m["columns"] == 2


def test_running_and_pending_models_of_an_unfinished_sweep(tmp_path):
    results, models = tmp_path / "new_lemur", tmp_path / "models"
    done = SPEC
    running = SPEC.replace(columns=3)
    pending = SPEC.replace(columns=1, local_drop=0.0, global_drop=0.0)
    working = SPEC.replace(columns=4)
    write_run(results, run_record(done.name, [0.5, 0.52]))
    (results / ".work" / working.name / "seed0").mkdir(parents=True)  # NNEval's unfinished trial
    (results / ".work" / "tmpabc").mkdir()
    stat = results / "stat" / "train" / f"img-classification_cifar-10_acc_{running.name}" / "1.json"
    stat.parent.mkdir(parents=True)
    stat.write_text(json.dumps([{"accuracy": 0.4, "duration": 2e9, "seed": 0, "epoch_max": 5,
                                 "train_stat": {"train_loss": 2.2, "test_loss": 2.3}}]))
    models.mkdir()
    lines = [{"name": s.name, "spec_hash": s.spec_hash, "status": "valid", "spec": s.to_dict(), "params": 10,
              "flops": 20} for s in (done, running, pending, working)]
    lines.append({"name": "Bad", "spec_hash": "x", "status": "invalid", "spec": None})
    (models / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "{torn")
    r = load_results(results, models)
    status = dict(zip(r.models["model"], r.models["status"]))
    assert status == {done.name: "trained", running.name: "running", pending.name: "pending",
                      working.name: "running"}
    run = r.models.set_index("model").loc[running.name]
    assert run["acc_mean"] == pytest.approx(0.4) and run["epoch_time_s"] == pytest.approx(2.0)
    assert r.generation == {"valid": 4, "invalid": 1}
    assert any("not a manifest record" in w for w in r.warnings)  # the torn last line

    rep = build_report(results, tmp_path / "out", models_dir=models, top=5)
    page = rep.html.read_text()
    assert "Snapshot of an unfinished sweep: of the models, 1 finished, 2 in progress and 1 not yet evaluated" in page
    assert 'id="sum-generated-all" data-key="generated" data-group="all" data-value="4"' in page


def test_spec_from_the_copied_model_file_when_the_record_has_none(tmp_path):
    write_run(tmp_path, run_record(SPEC.name, [0.5], spec=None))
    (tmp_path / "nn").mkdir()
    (tmp_path / "nn" / f"{SPEC.name}.py").write_text(f'"""x\n\nSpec: {SPEC.to_json()}\n"""\n')
    m = load_results(tmp_path).models.iloc[0]
    assert (m["depth"], m["columns"], m["norm"]) == (1, 2, "bn")
    assert math.isnan(m["acc_std"])  # one seed: no spread


def test_a_running_models_figures_include_what_its_trial_reported(tmp_path):
    """A stat trial of ours keeps the trial's own epoch time and peak memory under `self_reported`: a
    running model's row shows them (nn-dataset's duration is only the fallback)."""
    results = tmp_path / "new_lemur"
    stat = results / "stat" / "train" / f"img-classification_cifar-10_acc_{SPEC.name}" / "1.json"
    stat.parent.mkdir(parents=True)
    stat.write_text(json.dumps([{"accuracy": 0.4, "duration": 2e9, "train_stat": {"train_loss": 2.2},
                                 "nn_gpt_fractal": {"seed": 0, "device": "cpu", "self_reported": {
                                     "epoch_time_s": 1.5, "peak_memory_mb": 40.0, "device": "cuda"}}}]))
    run = load_results(results).models.set_index("model").loc[SPEC.name]
    assert run["status"] == "running" and run["epoch_time_s"] == pytest.approx(1.5)
    assert trial_figures(json.loads(stat.read_text())[0])["device"] == "cpu"  # the driver's word wins


def test_db_results_are_read_and_marked_registered(tmp_path):
    db = tmp_path / "ab.nn.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE stat (id TEXT PRIMARY KEY, accuracy REAL, epoch INT, duration INT, task TEXT, dataset TEXT,
                           nn TEXT, transform TEXT, metric TEXT, prm TEXT);
        CREATE TABLE train_stat (stat_id TEXT, train_loss REAL, test_loss REAL, train_accuracy REAL,
                                 samples_per_second REAL, epoch_max INT);""")
    for i, (prm, epoch, acc) in enumerate([("p1", 1, 0.3), ("p1", 2, 0.4), ("p2", 1, 0.35), ("p2", 2, 0.5)]):
        con.execute("INSERT INTO stat VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (str(i), acc, epoch, 3e9, "img-classification", "cifar-10", SPEC.name, "norm", "acc", prm))
        con.execute("INSERT INTO train_stat VALUES (?,?,?,?,?,?)", (str(i), 2.0, 2.1, 0.3, 100, 2))
    con.commit()
    con.close()
    (tmp_path / "res").mkdir()
    r = load_results(tmp_path / "res", db=db)
    m = r.models.iloc[0]
    assert (m["status"], m["in_db"], m["n_seeds"]) == ("trained", True, 2)
    assert m["acc_mean"] == pytest.approx(0.45) and m["epoch_time_s"] == pytest.approx(3.0)
    with pytest.raises(ResultsError, match="does not exist"):
        load_results(tmp_path / "res", db=tmp_path / "missing.db")
    (tmp_path / "junk.db").write_text("not a database" * 100)
    with pytest.raises(ResultsError, match="cannot read LEMUR database"):
        load_results(tmp_path / "res", db=tmp_path / "junk.db")


def test_cli_bad_input_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "A.json").write_text("{")
    for args in (["--results", str(tmp_path / "missing")], ["--results", str(tmp_path)]):
        r = run_module("ab.gpt.brute.fract.report", *args, "--report", str(tmp_path / "out"))
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
