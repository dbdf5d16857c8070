"""LLM and prompt configurations: `conf/llm/<name>.json` and `conf/prompt/<name>.json`.

A name is looked up in order: an explicit path, `<LEMUR root>/conf/<kind>/`, the repository's `conf/<kind>/`
(when the plugin runs from a source checkout), then the copy packed into this package when it was built
(setup.py; a source checkout has none).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ab.gpt.brute.fract.util.paths import lemur_root

BACKENDS = ("transformers", "openai")
DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZATIONS = (None, "4bit", "8bit")
MODES = ("spec", "code")
DEFAULT_LLM = "deepseek-r1-distill-qwen-7b"
DEFAULT_PROMPT = {"spec": "fractal_spec", "code": "fractal_code"}
PACKAGE_CONF = Path(__file__).resolve().parent / "conf"


class ConfigError(ValueError):
    """A configuration file that is missing or cannot be used."""


def search_dirs(kind: str) -> list[Path]:
    """Folders searched for `kind` ("llm" or "prompt") configs, first match wins."""
    dirs = [lemur_root() / "conf" / kind]
    for parent in Path(__file__).resolve().parents:  # a source checkout: <repo>/plugins/<dist>/<pkg>/
        if (parent / "conf" / kind).is_dir() and (parent / "plugins").is_dir():
            dirs.append(parent / "conf" / kind)
            break
    if (PACKAGE_CONF / kind).is_dir():
        dirs.append(PACKAGE_CONF / kind)
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def find_config(kind: str, name_or_path: str) -> Path:
    """A config file from a path (anything with a slash or ending in .json) or a name searched for."""
    if "/" in name_or_path or name_or_path.endswith(".json"):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"{kind} config {path} does not exist")
        return path
    tried = search_dirs(kind)
    for d in tried:
        path = d / f"{name_or_path}.json"
        if path.is_file():
            return path
    known = sorted({p.stem for d in tried if d.is_dir() for p in d.glob("*.json")})
    raise ConfigError(f"no {kind} config named {name_or_path!r} in {', '.join(map(str, tried))}; "
                      f"known: {', '.join(known) or 'none'}")


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def _build(cls, data: dict, path: Path):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names - {"comment"})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    data = {k: v for k, v in data.items() if k != "comment"}
    data.setdefault("name", path.stem)
    try:
        return cls(**data, source=str(path)) if "source" in names else cls(**data)
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from None


@dataclass(frozen=True)
class LLMConfig:
    """One model and how to reach it. `model` is a hub id or local folder (transformers) or the served
    model name (openai); `generation` holds sampling parameters (max_new_tokens, temperature, top_p, ...)."""

    name: str
    backend: str
    model: str
    description: str = ""
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = None
    dtype: str = "auto"
    quantization: str | None = None
    device: str = "auto"
    context_length: int = 4096
    generation: dict[str, Any] = field(default_factory=dict)
    reasoning: bool = False  # the model writes <think>...</think> before its answer
    use_system_prompt: bool = True  # False: the system text is put at the top of the user message
    timeout_s: float = 600.0
    trust_remote_code: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or self.name
        if self.backend not in BACKENDS:
            raise ConfigError(f"{where}: backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"{where}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"{where}: quantization {self.quantization!r} must be null, 4bit or 8bit")
        if not isinstance(self.context_length, int) or self.context_length < 256:
            raise ConfigError(f"{where}: context_length must be an integer >= 256")
        if not isinstance(self.generation, dict):
            raise ConfigError(f"{where}: generation must be an object")
        if self.max_new_tokens >= self.context_length:
            raise ConfigError(f"{where}: max_new_tokens must be below context_length")

    @property
    def max_new_tokens(self) -> int:
        return int(self.generation.get("max_new_tokens", 1024))

    def model_path(self) -> str:
        """`model` as given, or resolved against the config's folder when that names an existing folder."""
        if self.source and not Path(self.model).is_absolute():
            local = Path(self.source).parent / self.model
            if local.exists():
                return str(local)
        return self.model


@dataclass(frozen=True)
class PromptTemplate:
    """Jinja2 `system` and `user` messages; `mode` spec asks for JSON specs, code for a model file."""

    name: str
    mode: str
    system: str
    user: str
    description: str = ""
    proposals: int = 4  # specs asked for per call (spec mode)
    best_k: int = 5  # best earlier models shown
    failures_k: int = 8  # earlier failures shown
    source: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{self.source or self.name}: mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not 1 <= self.proposals <= 64:
            raise ConfigError(f"{self.source or self.name}: proposals must be in 1..64")


def load_llm_config(name_or_path: str = DEFAULT_LLM) -> LLMConfig:
    path = find_config("llm", name_or_path)
    return _build(LLMConfig, _load_json(path), path)


def load_prompt(name_or_path: str) -> PromptTemplate:
    path = find_config("prompt", name_or_path)
    return _build(PromptTemplate, _load_json(path), path)
