"""The OpenAI-compatible backend against a loopback server speaking the real chat-completions protocol,
through the registered `llm` generator and the real generation pipeline (static checks, jail, manifest)."""
from __future__ import annotations

import json

import pytest

from ab.gpt.brute.fract.fractal_template import render
from ab.gpt.brute.fract.generation.generate import generate
from ab.gpt.brute.fract.space.generators import Request
from ab.gpt.brute.fract.space.registry import build_registry
from ab.gpt.brute.fract.space.space import Space
from ab.gpt.brute.fract.space.spec import ArchSpec
from nn_gpt_fractal_llm import plugin
from nn_gpt_fractal_llm.backends import LLMError, OpenAIBackend
from nn_gpt_fractal_llm.config import load_llm_config
from nn_gpt_fractal_llm.testing import read_jsonl

A = {"depth": 2, "columns": 2, "channels": [8, 16], "layers": ["conv3x3", "bn", "relu"]}
B = {"depth": 1, "columns": 3, "channels": [8], "layers": ["conv5x5", "gelu"], "join": "max"}
C1 = {"depth": 1, "columns": 1, "channels": [8], "layers": ["conv3x3", "relu"], "local_drop": 0, "global_drop": 0}
C2 = {**C1, "join": "max"}  # another spec, but the same architecture (a 1-column net has no joins)
BAD = {"depth": 3, "columns": 2, "channels": [8, 16], "layers": ["conv3x3"]}


def fenced(*objs, think="Let me reason about width and depth first.") -> str:
    return f"<think>{think}</think>\nHere are my proposals:\n```json\n{json.dumps(list(objs), indent=1)}\n```"


def run(server, tmp_path, replies, *, mode="spec", max_calls=2, limit=None, timeout=60.0):
    reg = build_registry(third_party=False, extra={"llm": plugin})
    space = Space.default(reg)
    server.replies = replies
    out = tmp_path / "out"
    opts = {"llm": str(server.config(tmp_path)), "max_calls": str(max_calls), "mode": mode}
    proposals = reg.generators["llm"].propose(space, Request(limit=limit, seed=3, options=opts, out_dir=out))
    outcome = generate(proposals, reg, out, limit=limit, generator="llm", workers=1, timeout=timeout)
    return out, outcome, {r["spec_hash"]: r for r in read_jsonl(out / "manifest.jsonl")}


def test_spec_mode_end_to_end(chat_server, tmp_path, lemur_root, monkeypatch):
    monkeypatch.setenv("STUB_LLM_KEY", "sk-test")
    replies = [fenced(A, B, BAD, A, C1), "Sure. " + json.dumps({"specs": [B, C2, {**A, "layers": ["warp"]}]})]
    out, outcome, recs = run(chat_server, tmp_path, replies)

    a, b, c1 = (ArchSpec.from_dict(x) for x in (A, B, C1))
    assert sorted(outcome.accepted) == sorted([a.name, b.name, c1.name])
    assert {p.stem for p in out.glob("*.py")} == set(outcome.accepted)
    statuses = sorted(r["status"] for r in recs.values())
    assert statuses == ["duplicate"] * 3 + ["invalid"] * 2 + ["valid"] * 3
    for r in recs.values():
        assert r["status"] == "valid" or r["reason"], r
    reasons = " | ".join(r["reason"] for r in recs.values())
    assert "spec schema" in reasons and "unknown layer option(s) warp" in reasons
    assert "same architecture as" in reasons  # C2: caught by the pipeline's signature check
    assert "proposed earlier in this run" in reasons or "already generated" in reasons

    # the protocol: two POSTs with the configured model, token limit, messages and bearer key
    assert len(chat_server.requests) == 2
    body = chat_server.requests[0]
    assert body["model"] == "stub-model" and body["max_tokens"] == 512 and body["temperature"] == 0.0
    assert body["_headers"]["Authorization"] == "Bearer sk-test"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "conv3x3 (conv)" in body["messages"][1]["content"]
    # the second prompt carries feedback about the first call's rejects
    assert "spec schema" in chat_server.requests[1]["messages"][1]["content"]
    calls = read_jsonl(out / "llm_calls.jsonl")
    assert [c["call"] for c in calls] == [0, 1] and calls[0]["response"] == replies[0]
    assert calls[0]["usage"]["total_tokens"] > 0 and calls[0]["extracted"] == 5

    # a rerun deduplicates against what exists: nothing new, every repeat recorded as duplicate
    before = len(recs)
    _, outcome2, recs2 = run(chat_server, tmp_path, [fenced(A, B)], max_calls=1)
    assert outcome2.accepted == [] and len(recs2) == before + 2
    assert all(r["status"] == "duplicate" for k, r in recs2.items() if k not in recs)


def test_code_mode_valid_file_and_static_rejects(chat_server, tmp_path, lemur_root):
    reg = build_registry(third_party=False)
    good = render(ArchSpec.from_dict(A), reg)
    evil = good.replace("import torch\n", "import torch\nimport os\nos.system('touch /tmp/pwned')\n", 1)
    replies = ["<think>I'll reuse the fractal block.</think>\n```python\n" + good + "```",
               "```python\n" + evil + "```", "```python\n" + good + "```", "I won't write code today."]
    out, outcome, recs = run(chat_server, tmp_path, replies, mode="code", max_calls=4)
    assert len(outcome.accepted) == 1 and outcome.accepted[0].startswith("FractalNet-llm-stub-llm-")
    by_status = {}
    for r in recs.values():
        by_status.setdefault(r["status"], []).append(r["reason"])
    assert len(by_status["valid"]) == 1
    assert any("import of 'os' is not allowed" in x for x in by_status["invalid"])
    assert any("no Python code block" in x for x in by_status["invalid"])
    assert any("already generated" in x or "earlier in this run" in x for x in by_status["duplicate"])
    # code mode edits the best model so far: the prompt shows a model file
    assert "class Net(nn.Module)" in chat_server.requests[0]["messages"][-1]["content"]


def test_unreachable_endpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "down.json"
    path.write_text(json.dumps({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                "timeout_s": 2}))
    backend = OpenAIBackend(load_llm_config(str(path)))
    backend.retries = 0
    with pytest.raises(LLMError, match="cannot reach"):
        backend.complete([{"role": "user", "content": "hi"}])
