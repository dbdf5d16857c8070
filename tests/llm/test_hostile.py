"""Hostile LLM output: each file is rejected by the static allowlist or contained by the jail at run
time, and nothing appears outside the jail (a canary folder stays empty).

Three layers are shown: (1) the real pipeline, fed by the loopback LLM in code mode; (2) the jail alone,
given the statically rejected files anyway, as if the static check had a hole; (3) files that pass the
static check on purpose and misbehave at run time (endless loop, 100 GB allocation, CPU burn).
(The full hostile suite, with the static check off, is tests/trial/test_hostile_models.py.)
"""
from __future__ import annotations

import pytest

from ab.gpt.brute.fract.generation.generate import generate
from ab.gpt.brute.fract.generation.handlers import VALIDATE
from ab.gpt.brute.fract.generation.codecheck import check_contract, check_source
from ab.gpt.brute.fract.space.generators import Request
from ab.gpt.brute.fract.space.registry import build_registry
from ab.gpt.brute.fract.space.space import Space
from ab.gpt.brute.fract.trial import Trial, TrialLimits
from ab.gpt.brute.fract.trial.executors import LocalExecutor
from nn_gpt_fractal_llm import plugin
from nn_gpt_fractal_llm.testing import read_jsonl
from tests.trial.kit import model

# each writes {canary}/pwned or reaches the OS; every one must fail the static check
STATIC = {
    "writes a file": model("open('{canary}/pwned', 'w').write('x')"),
    "opens a socket": model("import socket\nsocket.create_connection(('127.0.0.1', {port}))"),
    "imports os via __import__": model("__import__('os').system('touch {canary}/pwned')"),
    "exec via getattr(__builtins__)": model("getattr(__builtins__, 'ex' + 'ec')(\"open('{canary}/pwned', 'w')\")"),
    "walks __subclasses__ to os": model(
        "w = [c for c in ().__class__.__bases__[0].__subclasses__() if c.__name__ == '_wrap_close'][0]\n"
        "w.__init__.__globals__['system']('touch {canary}/pwned')"),
    "match-class dunder walk": model(
        "match ():\n    case object(__class__=t):\n        pass\n"
        "match t:\n    case type(__base__=b):\n        pass\n"
        "for c in b.__subclasses__():\n    pass"),
    "torch.load pickle": model(init="torch.load('{canary}/w.pt', weights_only=False)"),
    "importlib": model("import importlib\nimportlib.import_module('os').system('touch {canary}/pwned')"),
    "subprocess": model("import subprocess\nsubprocess.run(['touch', '{canary}/pwned'])"),
    "string eval via get_type_hints": model(
        "import typing\n\n\ndef f(x: \"open('{canary}/pwned', 'w')\"):\n    pass\n\n\ntyping.get_type_hints(f)"),
    "tensorboard writer": model("from torch.utils.tensorboard import SummaryWriter\nSummaryWriter('{canary}/tb')"),
    "benchmark Timer runs a string": model(
        "import torch.utils.benchmark as b\nb.Timer(stmt=\"open('{canary}/pwned', 'w')\").timeit(1)"),
    "torch.compile spawns compilers": model(init="self.fwd = torch.compile(self.forward)"),
    "numpy tofile": model(init="torch.zeros(3).numpy().tofile('{canary}/pwned')"),
}
# these pass the static check and must be contained at run time
RUNTIME = {
    "endless loop in forward": (model(forward="while True:\n    x = x + 0"), "timed out"),
    "allocates 100 GB": (model(init="self.buf = torch.empty(100 * 2 ** 30, dtype=torch.uint8, device='cpu')"),
                         "out of memory"),
}
# run in the jail alone, as if the static check had let them through
RUNTIME_ONLY = ("writes a file", "opens a socket", "imports os via __import__", "walks __subclasses__ to os",
                "importlib", "subprocess", "string eval via get_type_hints", "benchmark Timer runs a string",
                "numpy tofile", "exec via getattr(__builtins__)")


def fill(code: str, canary, port: int = 9) -> str:
    return code.replace("{canary}", str(canary)).replace("{port}", str(port))


@pytest.fixture
def canary(tmp_path):
    folder = tmp_path / "canary"
    folder.mkdir()
    yield folder
    assert list(folder.iterdir()) == [], "something was written outside the run directory"


@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_check_rejects(name, canary):
    code = fill(STATIC[name], canary)
    assert check_contract(code) == []  # a complete model file otherwise
    assert check_source(code), f"{name} passed the static check"


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_runtime_cases_pass_the_static_check(name):
    code, _ = RUNTIME[name]
    assert check_source(code) == [] and check_contract(code) == []


def test_pipeline_rejects_or_contains_every_hostile_file(chat_server, tmp_path, lemur_root, canary):
    files = {n: fill(c, canary, chat_server.port) for n, c in STATIC.items()}
    files.update({n: c for n, (c, _) in RUNTIME.items()})
    files["benign"] = model()
    names = list(files)
    chat_server.replies = [f"<think>{n}</think>\n```python\n{files[n]}```" for n in names]
    reg = build_registry(third_party=False, extra={"llm": plugin})
    out = tmp_path / "out"
    opts = {"llm": str(chat_server.config(tmp_path)), "mode": "code", "max_calls": str(len(names))}
    proposals = reg.generators["llm"].propose(Space.default(reg), Request(options=opts, out_dir=out))
    outcome = generate(proposals, reg, out, limit=None, generator="llm", workers=1, timeout=5)

    recs = [r for r in read_jsonl(out / "manifest.jsonl")]
    assert len(recs) == len(names) == len(chat_server.requests)
    by_origin = {}
    for call in read_jsonl(out / "llm_calls.jsonl"):
        for key in call["forwarded"]:
            by_origin[key] = names[call["call"]]
    status = {by_origin[r["spec_hash"]]: (r["status"], r["reason"]) for r in recs}
    for n in STATIC:
        assert status[n][0] == "invalid" and status[n][1].startswith("static check"), (n, status[n])
    for n, (_, reason) in RUNTIME.items():
        assert status[n][0] == "invalid" and reason in status[n][1], (n, status[n])
    assert status["benign"][0] == "valid" and len(outcome.accepted) == 1
    assert sorted(p.name for p in out.iterdir() if p.name != ".staging") == sorted(
        ["manifest.jsonl", "llm_calls.jsonl", outcome.accepted[0] + ".py"])
    # (.staging is the run directory: a killed worker may leave torch's temp files there, nothing else)
    assert not list(out.glob(".staging/*.py"))


def test_jail_contains_what_the_static_check_would_have_stopped(chat_server, canary):
    """Defense in depth: the statically rejected files, run anyway, cannot reach the canary or the network."""
    with LocalExecutor(1, TrialLimits()) as ex:
        for name in RUNTIME_ONLY:
            res = ex.submit(Trial("validate", fill(STATIC[name], canary, chat_server.port), {"mode": "meta"},
                                  60, handler=VALIDATE)).result()
            assert res.status in ("ok", "error"), (name, res)
    assert chat_server.requests == []  # the socket never connected


def test_cpu_limit_kills_a_busy_model():
    code = model(init="n = 0\nwhile True:\n    n += 1")
    assert check_source(code) == []
    with LocalExecutor(1, TrialLimits(cpu_s=2)) as ex:
        res = ex.submit(Trial("validate", code, {"mode": "meta"}, 120, handler=VALIDATE)).result()
    assert res.status == "error" and "CPU time limit (SIGXCPU)" in res.message
