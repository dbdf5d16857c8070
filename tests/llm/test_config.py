"""conf/llm and conf/prompt: shipped configs load, lookup order, one source of truth, lazy loading."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nn_gpt_fractal_llm import config

REPO = Path(__file__).resolve().parents[2]
PACKAGE_CONF = REPO / "plugins" / "nn-gpt-fractal-llm" / "nn_gpt_fractal_llm" / "conf"


@pytest.mark.parametrize("kind", ["llm", "prompt"])
def test_package_copy_matches_repo_conf(kind):
    repo = {p.name: p.read_bytes() for p in (REPO / "conf" / kind).glob("*.json")}
    shipped = {p.name: p.read_bytes() for p in (PACKAGE_CONF / kind).glob("*.json")}
    assert repo and repo == shipped, "run python plugins/nn-gpt-fractal-llm/sync_conf.py"


def test_shipped_configs_load():
    names = [p.stem for p in (REPO / "conf" / "llm").glob("*.json")]
    cfgs = {n: config.load_llm_config(n) for n in names}
    r1 = cfgs["deepseek-r1-distill-qwen-7b"]
    assert r1.backend == "transformers" and r1.model == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" and r1.reasoning
    assert cfgs["deepseek-r1-distill-qwen-7b-vllm"].backend == "openai"
    assert any("0.5b" in n and c.backend == "transformers" for n, c in cfgs.items())  # a small model
    for n in ("fractal_spec", "fractal_code"):
        assert config.load_prompt(n).mode == n.split("_")[1]


def test_lookup_order(lemur_root, tmp_path):
    # the LEMUR root's conf/ wins over the repository's and the package's
    (lemur_root / "conf" / "llm").mkdir(parents=True)
    (lemur_root / "conf" / "llm" / "deepseek-r1-distill-qwen-7b.json").write_text(
        json.dumps({"backend": "openai", "model": "override"}))
    assert config.load_llm_config("deepseek-r1-distill-qwen-7b").model == "override"
    assert config.search_dirs("llm")[0] == lemur_root / "conf" / "llm"
    assert config.search_dirs("llm")[-1] == PACKAGE_CONF / "llm"
    # an explicit path wins over everything
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"backend": "openai", "model": "explicit"}))
    assert config.load_llm_config(str(path)).model == "explicit"


@pytest.mark.parametrize("data, message", [
    ({"backend": "gpt5", "model": "x"}, "backend"),
    ({"backend": "openai", "model": "x", "temprature": 1}, "unknown keys"),
    ({"backend": "openai", "model": "x", "quantization": "2bit"}, "quantization"),
    ({"backend": "openai", "model": "x", "context_length": 512, "generation": {"max_new_tokens": 600}}, "below"),
])
def test_bad_configs(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(config.ConfigError, match=message):
        config.load_llm_config(str(path))


def test_unknown_name_lists_known():
    with pytest.raises(config.ConfigError, match="deepseek-r1-distill-qwen-7b"):
        config.load_llm_config("no-such-model")


def test_plugin_import_loads_no_llm_library():
    code = ("import sys; import nn_gpt_fractal_llm.plugin as p; gens = p.fractal_generators(); "
            "print(gens[0].name, 'transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": f"{REPO}:{REPO / 'plugins' / 'nn-gpt-fractal-llm'}", "PATH": ""})
    assert out.stdout.split() == ["llm", "False", "False"]
