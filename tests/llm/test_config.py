"""conf/llm and conf/prompt: one committed copy packed into the installed plugin, lookup order, lazy loading."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nn_gpt_fractal_llm import config

REPO = Path(__file__).resolve().parents[2]
PACKAGE_CONF = REPO / "plugins" / "nn-gpt-fractal-llm" / "nn_gpt_fractal_llm" / "conf"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """The plugin pip-installed (no dependencies) into a folder outside the repository."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(REPO / "plugins" / "nn-gpt-fractal-llm")],
                   check=True, capture_output=True, text=True)
    return site


def test_conf_is_committed_once():
    assert not PACKAGE_CONF.exists(), "the plugin must use the repository's conf/, not a copy"
    assert not (REPO / "plugins" / "nn-gpt-fractal-llm" / "sync_conf.py").exists()


@pytest.mark.parametrize("kind", ["llm", "prompt"])
def test_installed_plugin_carries_the_repo_conf(installed_plugin, kind):
    repo = {p.name: p.read_bytes() for p in (REPO / "conf" / kind).glob("*.json")}
    shipped = {p.name: p.read_bytes() for p in (installed_plugin / "nn_gpt_fractal_llm" / "conf" / kind).glob("*.json")}
    assert repo and repo == shipped


def test_installed_plugin_finds_its_configs_outside_a_checkout(installed_plugin, tmp_path):
    code = ("from nn_gpt_fractal_llm import config; "
            "print(config.find_config('llm', 'deepseek-r1-distill-qwen-7b')); "
            "print(config.load_prompt('fractal_code').mode)")
    env = {"PYTHONPATH": f"{installed_plugin}:{REPO}", "PATH": "", "NN_GPT_FRACTAL_ROOT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    path, mode = out.stdout.split()
    assert Path(path) == installed_plugin / "nn_gpt_fractal_llm" / "conf" / "llm" / "deepseek-r1-distill-qwen-7b.json"
    assert mode == "code"


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
    assert config.search_dirs("llm")[-1] == REPO / "conf" / "llm"  # a source checkout: no packed copy
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
