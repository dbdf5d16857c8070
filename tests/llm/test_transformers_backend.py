"""The transformers backend with a tiny random Llama and a byte-level tokenizer built in the test (no
download), through the real load and generate path and the real generation pipeline."""
from __future__ import annotations

import json

from ab.gpt.brute.fract.generation.generate import generate
from ab.gpt.brute.fract.space.generators import Request
from ab.gpt.brute.fract.space.registry import build_registry
from ab.gpt.brute.fract.space.space import Space
from ab.gpt.brute.fract.space.spec import ArchSpec
from nn_gpt_fractal_llm import plugin
from nn_gpt_fractal_llm.backends import TransformersBackend, make_backend
from nn_gpt_fractal_llm.config import load_llm_config
from nn_gpt_fractal_llm.generator import llm_proposals
from nn_gpt_fractal_llm.testing import ForcedText, read_jsonl

SPEC = {"depth": 2, "columns": 2, "channels": [8, 16], "layers": ["conv3x3", "bn", "relu"]}


def tiny_config(tmp_path, model_dir, **gen):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"backend": "transformers", "model": str(model_dir), "dtype": "float32",
                                "device": "cpu", "context_length": 16384, "use_system_prompt": True,
                                "generation": {"max_new_tokens": 48, "do_sample": True, "temperature": 1.0,
                                               **gen}}))
    return path


def pipeline(tmp_path, cfg_path, factory=None, max_calls=2):
    reg = build_registry(third_party=False, extra={"llm": plugin})
    space = Space.default(reg)
    out = tmp_path / "out"
    req = Request(limit=None, seed=1, options={"llm": str(cfg_path), "max_calls": str(max_calls)}, out_dir=out)
    proposals = llm_proposals(space, req, registry=reg, backend_factory=factory)
    outcome = generate(proposals, reg, out, limit=None, generator="llm", workers=1)
    return out, outcome, read_jsonl(out / "manifest.jsonl")


def test_model_loads_lazily(tmp_path, tiny_lm):
    backend = make_backend(load_llm_config(str(tiny_config(tmp_path, tiny_lm))))
    assert isinstance(backend, TransformersBackend) and not backend.loaded
    reg = build_registry(third_party=False)
    req = Request(options={"llm": str(tiny_config(tmp_path, tiny_lm))}, out_dir=None)
    llm_proposals(Space.default(reg), req, registry=reg)  # a generator: building it loads nothing
    assert not backend.loaded


def test_random_tiny_lm_junk_is_all_rejected(tmp_path, tiny_lm, lemur_root):
    out, outcome, recs = pipeline(tmp_path, tiny_config(tmp_path, tiny_lm))
    calls = read_jsonl(out / "llm_calls.jsonl")
    assert len(calls) == 2 and all(c["usage"]["completion_tokens"] > 0 for c in calls)
    assert calls[0]["usage"]["prompt_tokens"] > 1000  # the whole rendered prompt went through the model
    assert outcome.accepted == [] and not list(out.glob("*.py"))
    assert recs and all(r["status"] in ("invalid", "duplicate") and r["reason"] for r in recs)


def test_forced_output_is_accepted(tmp_path, tiny_lm, lemur_root):
    texts = ["<think>wider first block</think>\n```json\n" + json.dumps([SPEC, {**SPEC, "depth": 7}]) + "\n```"]
    forced = {}

    def factory(cfg):
        backend = TransformersBackend(cfg)
        backend.load()
        forced["fn"] = ForcedText(backend.tokenizer, texts)
        backend.generate_kwargs["prefix_allowed_tokens_fn"] = forced["fn"]
        return backend

    cfg = tiny_config(tmp_path, tiny_lm, max_new_tokens=400, do_sample=False)
    out, outcome, recs = pipeline(tmp_path, cfg, factory, max_calls=1)
    assert outcome.accepted == [ArchSpec.from_dict(SPEC).name]
    [bad] = [r for r in recs if r["status"] != "valid"]
    assert bad["status"] == "invalid" and "channels" in bad["reason"]
    assert read_jsonl(out / "llm_calls.jsonl")[0]["response"] == texts[0]
