"""Feedback from earlier results (NNEval's runs/<Model>.json, the manifest, the LEMUR DB) reaches the
prompt, and what exists is not proposed again. The results folder is written here in NNEval's format."""
from __future__ import annotations

import json
import sqlite3

from ab.gpt.brute.fract.space.generators import Request
from ab.gpt.brute.fract.space.registry import build_registry
from ab.gpt.brute.fract.space.space import Space
from ab.gpt.brute.fract.space.spec import ArchSpec
from nn_gpt_fractal_llm import feedback
from nn_gpt_fractal_llm.generator import llm_proposals
from nn_gpt_fractal_llm.testing import read_jsonl, write_json

GOOD = ArchSpec.from_dict({"depth": 2, "columns": 2, "channels": [8, 16], "layers": ["conv3x3", "bn", "relu"]})
WIDE = ArchSpec.from_dict({"depth": 4, "columns": 4, "channels": [512] * 4, "layers": ["conv5x5", "bn", "relu"]})


def run_file(folder, spec, status, accs, message=""):
    seeds = [{"seed": s, "status": status, "message": message,
              "epochs": [{"epoch": e + 1, "accuracy": a, "train_loss": 2.0 - a} for e, a in enumerate(seed_accs)]}
             for s, seed_accs in enumerate(accs)]
    write_json(folder / "runs" / f"{spec.name}.json", {"name": spec.name, "status": status, "message": message,
                                                        "seeds": seeds, "spec": spec.to_dict(), "config": {}})


def results_folder(tmp_path):
    nl = tmp_path / "new_lemur"
    run_file(nl, GOOD, "trained", [[0.31, 0.42], [0.30, 0.44]])
    run_file(nl, WIDE, "out-of-memory", [[]], "CUDA out of memory: tried to allocate 2.1 GiB")
    chance = GOOD.replace(join="max")
    run_file(nl, chance, "trained", [[0.10]])
    (nl / "runs" / "broken.json").write_text("{not json")
    return nl


def lemur_db(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE stat (id TEXT PRIMARY KEY, accuracy REAL, epoch INTEGER, duration INTEGER, "
                "task TEXT, dataset TEXT, nn TEXT, transform TEXT, metric TEXT, prm TEXT)")
    rows = [("1", 0.802, 5, 0, "img-classification", "cifar-10", "FractalNet-abc123", "norm_flip", "acc", "p"),
            ("2", 0.95, 50, 0, "img-classification", "cifar-10", "ResNet", "norm_flip", "acc", "p"),
            ("3", 0.77, 5, 0, "img-classification", "cifar-100", "FractalNet-zzz", "norm_flip", "acc", "p")]
    con.executemany("INSERT INTO stat VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()
    return path


def test_collect_reads_runs_manifest_and_db(tmp_path):
    nl = results_folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text(json.dumps({"name": "bad", "spec": None, "spec_hash": "code-1",
                                                    "status": "invalid", "reason": "static check: line 3: "
                                                    "import of 'os' is not allowed"}) + "\n")
    fb = feedback.collect(out, nl, lemur_db(tmp_path / "ab.nn.db"))
    assert [(b.name, round(b.accuracy, 3)) for b in fb.best] == [("FractalNet-abc123", 0.802), (GOOD.name, 0.43)]
    assert fb.best[1].epochs == 2 and fb.skipped_files == 1
    reasons = {f.name: f.reason for f in fb.failures}
    assert "out of memory" in reasons[WIDE.name] and "chance" in reasons[GOOD.replace(join="max").name]
    assert "import of 'os'" in reasons["bad"]
    assert {GOOD.spec_hash, WIDE.spec_hash, "code-1"} <= fb.seen


def test_prompt_carries_feedback_and_existing_specs_are_not_reproposed(chat_server, tmp_path, lemur_root):
    nl = results_folder(tmp_path)
    db = lemur_db(tmp_path / "ab.nn.db")
    new = GOOD.replace(channels=(16, 32))
    chat_server.replies = ["```json\n" + json.dumps([GOOD.to_dict(), WIDE.to_dict(), new.to_dict()]) + "\n```"]
    out = tmp_path / "out"
    out.mkdir()
    reg = build_registry(third_party=False)
    opts = {"llm": str(chat_server.config(tmp_path)), "new_lemur": str(nl), "lemur_db": str(db), "max_calls": "1"}
    got = list(llm_proposals(Space.default(reg), Request(options=opts, out_dir=out), registry=reg))
    assert got == [new]
    recs = read_jsonl(out / "manifest.jsonl")
    assert sorted(r["status"] for r in recs) == ["duplicate", "duplicate"]
    assert all("already generated or evaluated" in r["reason"] for r in recs)
    prompt = chat_server.requests[0]["messages"][-1]["content"]
    assert f"{GOOD.name}: accuracy 0.4300" in prompt and "FractalNet-abc123: accuracy 0.8020" in prompt
    assert "CUDA out of memory" in prompt and "stayed at chance accuracy" in prompt
    assert "ResNet" not in prompt  # other families are not shown as fractal results
