"""The LEMUR round trip through nn-dataset 2.2.11's own functions and CLI, offline, on the CIFAR-10 data
the tests use: its JSON import of our stat files, selection by full config name, training through
`python -m ab.nn.train`, `check_nn` on a generated file, and `api.data` rows with metric and transform
code and the train_stat system fields filled. Every nn-dataset step runs in a subprocess rooted in a
source-checkout layout (lemurkit), with HF_HUB_OFFLINE=1."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from ab.gpt.brute.fract.lemur.names import config_name

from .lemurkit import checkout, run

pytestmark = pytest.mark.slow
METRIC_SRC = "ab/gpt/brute/fract/lemur/metric.py"


def rows(db, sql):
    with sqlite3.connect(db) as con:
        return sorted(map(tuple, con.execute(sql).fetchall()), key=repr)


def tables(db) -> dict:
    return {"nn": rows(db, "SELECT name, code, id FROM nn"), "metric": rows(db, "SELECT name, code, id FROM metric"),
            "transform": rows(db, "SELECT name, code, id FROM transform"),
            "stat": rows(db, "SELECT * FROM stat"), "train_stat": rows(db, "SELECT * FROM train_stat"),
            "prm": rows(db, "SELECT DISTINCT uid, name, value FROM prm")}


def test_nn_datasets_json_import_of_our_stat_files_equals_our_registration(sweep, tmp_path, cifar_dir):
    src, names = sweep
    root = checkout(tmp_path / "import", cifar_dir)
    # what nn-dataset's own repository holds: model and metric code, stat/train/<config>/<epoch>.json
    for n in names:
        shutil.copy(src / "new_lemur" / "nn" / f"{n}.py", root / "ab" / "nn" / "nn")
        shutil.copytree(src / "new_lemur" / "stat" / "train" / config_name(n), root / "ab" / "nn" / "stat" / "train" /
                        config_name(n))
    shutil.copy(src / "ab" / "gpt" / "brute" / "fract" / "lemur" / "metric.py", root / "ab" / "nn" / "metric" / "acc.py")
    # no DB file: importing nn-dataset's Write module runs init_population() -> init_db() + json_train_to_db()
    proc = run(root, ["-c", "import ab.nn.util.db.Write"])
    assert "skipping" not in proc.stderr, proc.stderr
    theirs, ours = tables(root / "db" / "ab.nn.db"), tables(src / "ours.db")
    assert len(ours["stat"]) == 3 * 2 * 2 and len(ours["train_stat"]) == 12 and ours["metric"] and ours["transform"]
    for table in ours:
        assert theirs[table] == ours[table], table
    with sqlite3.connect(root / "db" / "ab.nn.db") as con:  # nn-dataset's import repeats prm rows per epoch
        assert con.execute("SELECT COUNT(*) FROM prm").fetchone()[0] > len(ours["prm"])


def test_nn_dataset_train_selects_and_trains_a_registered_model(sweep, lemur_user, cifar_sums):
    src, names = sweep
    name = next(n for n in names if "drop0p2" in n.split("-"))
    config = config_name(name)
    before = rows(lemur_user / "db" / "ab.nn.db", f"SELECT accuracy FROM stat WHERE nn = '{name}' AND epoch = 1")
    proc = run(lemur_user, ["-m", "ab.nn.train", "-c", config, "-e", "1", "-p",
                            json.dumps({"lr": 0.01, "momentum": 0.9, "batch": 32}), "-f", "norm_flip", "-w", "0"],
               sums=cifar_sums)
    assert f"1. ('img-classification', 'cifar-10', 'acc', '{name}')" in proc.stdout, proc.stdout[-2000:]
    after = rows(lemur_user / "db" / "ab.nn.db", f"SELECT accuracy FROM stat WHERE nn = '{name}' AND epoch = 1")
    assert len(after) == len(before) + 1  # one new trial, trained by nn-dataset's trainer
    # nn-dataset rebuilt the model and the metric from our DB rows
    nn_dir = lemur_user / "ab" / "nn"
    assert (nn_dir / "nn" / f"{name}.py").read_text() == (src / "new_lemur" / "nn" / f"{name}.py").read_text()
    assert (nn_dir / "metric" / "acc.py").read_text() == (src / METRIC_SRC).read_text()
    # its stat JSON and ours have the same keys (ours adds the model's dropout and our own dict)
    theirs = json.loads((nn_dir / "stat" / "train" / config / "1.json").read_text())[0]
    ours = json.loads((src / "new_lemur" / "stat" / "train" / config / "1.json").read_text())[0]
    assert [k for k in ours if k not in ("dropout", "nn_gpt_fractal")] == list(theirs)
    assert list(ours["train_stat"]) == list(theirs["train_stat"])
    # same types, except the columns that would hold the model's own claims: null in ours (docs/security.md)
    claims = {"train_loss", "train_accuracy", "gradient_norm"}
    assert all(ours["train_stat"][k] is None for k in claims)
    assert {k: type(v) for k, v in ours["train_stat"].items() if k not in claims} == \
        {k: type(v) for k, v in theirs["train_stat"].items() if k not in claims}


def test_nn_dataset_train_selects_nothing_for_an_old_underscore_name(lemur_user, cifar_sums):
    proc = run(lemur_user, ["-m", "ab.nn.train", "-c", "img-classification_cifar-10_acc_FractalNet_N2_C2_x", "-e", "1"],
               sums=cifar_sums)
    assert "1. (" not in proc.stdout  # why names must not hold '_'


def test_check_nn_accepts_a_generated_file(sweep, lemur_user, cifar_sums):
    src, names = sweep
    code_file = src / "out" / "fractal" / f"{names[0]}.py"
    script = ("import json, sys\nimport ab.nn.api as api\n"
              "code = open(sys.argv[1]).read()\n"
              "prm = {'lr': 0.01, 'momentum': 0.9, 'batch': 32, 'epoch': 1, 'transform': 'norm_flip'}\n"
              "name, acc, acc_to_time, quality = api.check_nn(code, 'img-classification', 'cifar-10', 'acc', prm,"
              " save_to_db=False)\n"
              "print('RESULT', json.dumps([name, acc, quality]))\n")
    proc = run(lemur_user, ["-c", script, str(code_file)], sums=cifar_sums)
    name, acc, quality = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert isinstance(name, str) and 0.0 < acc <= 1.0 and quality is not None


def test_api_data_rows_have_metric_and_transform_code_prm_and_system_fields(sweep, lemur_user):
    src, names = sweep
    script = ("import json, sys\nimport ab.nn.api as api\n"
              "df = api.data(nn=tuple(json.loads(sys.argv[1])))\n"
              "print('RESULT', df[['nn', 'epoch', 'metric_code', 'transform_code', 'nn_code', 'prm']]"
              ".to_json(orient='records'))\n")
    proc = run(lemur_user, ["-c", script, json.dumps(names)])
    records = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert len(records) == 12
    metric = (src / METRIC_SRC).read_text()
    for r in records:
        assert r["metric_code"] == metric and "def transform" in r["transform_code"]
        assert r["nn_code"] == (src / "new_lemur" / "nn" / f"{r['nn']}.py").read_text()
        prm = r["prm"]
        assert {"lr", "momentum", "batch", "epoch_max", "transform"} <= set(prm) and "seed" not in prm
        tokens = r["nn"].split("-")
        if "drop0p2" in tokens:
            assert prm["dropout"] == 0.2 and "block_dropout" not in prm
        elif "drop0x0p4" in tokens:  # Larsson's schedule over 2 blocks
            assert prm["block_dropout"] == "0,0.4" and "dropout" not in prm
        else:
            assert "dropout" not in prm and "block_dropout" not in prm
    system = rows(lemur_user / "db" / "ab.nn.db", "SELECT cpu_count, cpu_type, total_ram_kb, occupied_ram_kb, "
                  "ram_usage_percent, cpu_usage_percent, gpu_type FROM train_stat")
    assert len(system) == 12 and all(v is not None for row in system for v in row)
