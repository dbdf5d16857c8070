"""The closed loop through the real CLI: `AlterNNFN --generator llm --rounds 2` with the plugin found
through its entry point, the loopback LLM, and the real NNEval (a subprocess) training each round."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ab.gpt.brute.fract.space.spec import ArchSpec
from nn_gpt_fractal_llm.testing import read_jsonl

REPO = Path(__file__).resolve().parents[2]
ROUND1 = [{"depth": 1, "columns": 2, "channels": [8], "layers": ["conv3x3", "bn", "relu"]},
          {"depth": 2, "columns": 1, "channels": [8, 16], "layers": ["conv3x3", "relu"], "local_drop": 0,
           "global_drop": 0}]
ROUND2 = [{"depth": 2, "columns": 2, "channels": [8, 16], "layers": ["conv3x3", "bn", "relu"]},
          {"depth": 1, "columns": 2, "channels": [16], "layers": ["conv3x3", "bn", "gelu"]}]


@pytest.fixture
def plugin_env(tmp_path):
    """PYTHONPATH with the plugin's source and a dist-info that declares its entry point, as pip would."""
    site = tmp_path / "site"
    info = site / "nn_gpt_fractal_llm-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nn-gpt-fractal-llm\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[nn_gpt_fractal]\nllm = nn_gpt_fractal_llm.plugin\n")
    paths = [str(REPO), str(REPO / "plugins" / "nn-gpt-fractal-llm"), str(site)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "NN_GPT_FRACTAL_ROOT": str(tmp_path / "lemur"),
            "PYTHONUNBUFFERED": "1"}


def alter(env, *args, timeout=540, module="ab.gpt.brute.fract.AlterNNFN"):
    return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_plugin_found_through_entry_point(plugin_env):
    res = alter(plugin_env, "plugins", module="ab.gpt.brute.fract.cli")
    assert res.returncode == 0, res.stderr
    assert "llm:" in res.stdout and "generators:     llm" in res.stdout


def test_rounds_need_limit_and_exclude_dry_run(plugin_env):
    res = alter(plugin_env, "--generator", "llm", "--rounds", "2")
    assert res.returncode == 2 and "--rounds needs --limit" in res.stderr


@pytest.mark.slow
def test_closed_loop_with_nneval(chat_server, plugin_env, cifar_dir, tmp_path):

    chat_server.replies = ["<think>...</think>\n```json\n" + json.dumps(specs) + "\n```" for specs in (ROUND1, ROUND2)]
    out, nl = tmp_path / "out", tmp_path / "new_lemur"
    evals = ["--epochs=1", "--train-limit=128", "--test-limit=64", "--threads=1", "--no-register", "-q",
             f"--data-dir={cifar_dir}"]
    res = alter(plugin_env, "--generator", "llm", "--gen-opt", f"llm={chat_server.config(tmp_path)}",
                "--limit", "2", "--rounds", "2", "--models", str(out), "--results", str(nl), "--workers", "1",
                *[f"--eval-arg={a}" for a in evals])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "round 1/2: 2 new" in res.stdout and "round 2/2: 2 new" in res.stdout, res.stdout

    names = [ArchSpec.from_dict(s).name for s in ROUND1 + ROUND2]
    for k, round_names in ((1, names[:2]), (2, names[2:])):
        assert sorted(p.stem for p in (out / ".rounds" / f"{k:03d}").glob("*.py")) == sorted(round_names)
    runs = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in (nl / "runs").glob("*.json")}
    assert sorted(runs) == sorted(names)
    assert all(r["status"] == "trained" and r["seeds"][0]["epochs"] for r in runs.values())
    # one LLM call per round; round 2's prompt carried round 1's results (best, or at chance after 128 images)
    assert len(chat_server.requests) == 2
    first, second = (r["messages"][-1]["content"] for r in chat_server.requests)
    assert "No trained results yet" in first and all(n not in first for n in names)
    for n in names[:2]:
        assert f"{n}: accuracy" in second or f"{n} [trained]: stayed at chance accuracy" in second
    calls = read_jsonl(out / "llm_calls.jsonl")
    assert [c["round"] for c in calls] == [1, 2]
