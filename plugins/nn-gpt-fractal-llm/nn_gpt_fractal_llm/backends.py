"""LLM backends: a local transformers model (loaded lazily) or an OpenAI-compatible HTTP endpoint.

Both take chat messages [{"role": ..., "content": ...}] and return a `Completion`. The HTTP backend speaks
the chat-completions protocol with the standard library only (vLLM, llama.cpp server, Ollama, ...).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from .config import LLMConfig

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_OPENAI_KEYS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "n")


class LLMError(RuntimeError):
    """The model could not be loaded or reached, or gave no usable reply."""


@dataclass
class Completion:
    text: str
    latency_s: float
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None


def chat_messages(cfg: LLMConfig, system: str, user: str) -> list[dict[str, str]]:
    """System and user messages, or one user message when the model works best without a system prompt."""
    if cfg.use_system_prompt:
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return [{"role": "user", "content": f"{system}\n\n{user}" if system else user}]


class OpenAIBackend:
    """POST {base_url}/chat/completions; retries connection errors, 429 and 5xx twice."""

    retries = 2

    def __init__(self, cfg: LLMConfig) -> None:
        self.cfg = cfg
        host = urllib.parse.urlsplit(cfg.base_url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def body(self, messages: list[dict[str, str]], seed: int | None) -> dict[str, Any]:
        gen = self.cfg.generation
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages,
                                "max_tokens": self.cfg.max_new_tokens}
        body.update({k: gen[k] for k in _OPENAI_KEYS if k in gen})
        if gen.get("do_sample") is False:
            body["temperature"] = 0.0
        if seed is not None and "seed" not in body:
            body["seed"] = seed
        return body

    def complete(self, messages: list[dict[str, str]], seed: int | None = None) -> Completion:
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(self.body(messages, seed)).encode()
        started = time.perf_counter()
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with self._opener.open(req, timeout=self.cfg.timeout_s) as resp:
                    reply = json.loads(resp.read().decode("utf-8"))
                break
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode("utf-8", "replace")
                if e.code in (429, 500, 502, 503, 504) and attempt < self.retries:
                    time.sleep(1 + attempt)
                    continue
                raise LLMError(f"{url} answered HTTP {e.code}: {detail}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                if attempt < self.retries:
                    time.sleep(1 + attempt)
                    continue
                reason = getattr(e, "reason", e)
                raise LLMError(f"cannot reach {url} ({reason}); start the server or pick another "
                               f"--gen-opt llm=...") from None
            except json.JSONDecodeError as e:
                raise LLMError(f"{url} did not answer JSON: {e}") from None
        try:
            choice = reply["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(f"{url} answered without choices[0].message: {str(reply)[:300]}") from None
        return Completion(text=text, latency_s=time.perf_counter() - started,
                          usage=reply.get("usage") or {}, finish_reason=choice.get("finish_reason"))


def import_transformers():
    """`transformers`, importable even beside a torchao release built for a newer torch (torchao 0.18
    with torch 2.9 fails inside transformers' model imports). No torchao feature is used here, so a
    torchao that cannot be imported is hidden from transformers in this process."""
    if "transformers.modeling_utils" not in sys.modules and importlib.util.find_spec("torchao") is not None:
        try:
            import torchao.prototype.safetensors.safetensors_support  # noqa: F401 - what transformers imports
        except Exception:  # noqa: BLE001 - any failure means transformers would fail the same way
            for name in [m for m in sys.modules if m == "torchao" or m.startswith("torchao.")]:
                del sys.modules[name]
            sys.modules["torchao"] = None  # find_spec() now says "not installed"
    try:
        import transformers
    except ImportError as e:
        raise LLMError(f"the transformers backend needs `pip install 'nn-gpt-fractal-llm[transformers]'` "
                       f"({e})") from None
    return transformers


class TransformersBackend:
    """A causal LM through transformers, loaded on the first `complete` call (never at import).

    `generate_kwargs` go straight to `model.generate` (e.g. a `prefix_allowed_tokens_fn` or logits
    processors for constrained decoding)."""

    def __init__(self, cfg: LLMConfig, generate_kwargs: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.generate_kwargs = dict(generate_kwargs or {})
        self.model = None
        self.tokenizer = None
        self.device = None

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        if self.loaded:
            return
        import torch

        transformers = import_transformers()
        cfg = self.cfg
        path = cfg.model_path()
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code,
                                  "dtype": "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)}
        if cfg.quantization:
            if device != "cuda":
                raise LLMError(f"{cfg.name}: {cfg.quantization} quantization needs a CUDA GPU")
            compute = torch.bfloat16 if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_4bit=cfg.quantization == "4bit", load_in_8bit=cfg.quantization == "8bit",
                bnb_4bit_compute_dtype=compute, bnb_4bit_quant_type="nf4")
            kwargs["device_map"] = "auto"
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
            model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except (OSError, ValueError, ImportError) as e:
            raise LLMError(f"cannot load {cfg.name} from {path!r}: {str(e).splitlines()[0]}") from None
        if not cfg.quantization:
            model.to(device)
        model.eval()
        self.model, self.device = model, device

    def prompt_text(self, messages: list[dict[str, str]]) -> tuple[str, bool]:
        """(text, uses_chat_template): the tokenizer's chat template, or a plain transcript without one."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(lines) + "\n\nAssistant:", False

    def complete(self, messages: list[dict[str, str]], seed: int | None = None) -> Completion:
        import torch

        self.load()
        started = time.perf_counter()
        text, templated = self.prompt_text(messages)
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=not templated).to(self.device)
        n_prompt = int(inputs["input_ids"].shape[1])
        budget = self.cfg.context_length - self.cfg.max_new_tokens
        if n_prompt > budget:
            raise LLMError(f"prompt has {n_prompt} tokens; {self.cfg.name} allows {budget} "
                           f"(context_length {self.cfg.context_length} - max_new_tokens "
                           f"{self.cfg.max_new_tokens}): lower best_k/failures_k or raise context_length")
        gen = dict(self.cfg.generation)
        gen.setdefault("pad_token_id", self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                       else self.tokenizer.eos_token_id)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen, **self.generate_kwargs)
        new = out[0, n_prompt:]
        answer = self.tokenizer.decode(new, skip_special_tokens=True)
        eos = self.tokenizer.eos_token_id
        finish = "stop" if len(new) and int(new[-1]) == eos else ("length" if len(new) >= self.cfg.max_new_tokens
                                                                     else "stop")
        return Completion(text=answer, latency_s=time.perf_counter() - started,
                          usage={"prompt_tokens": n_prompt, "completion_tokens": int(len(new))},
                          finish_reason=finish)


def make_backend(cfg: LLMConfig, **kwargs: Any):
    if cfg.backend == "openai":
        return OpenAIBackend(cfg)
    return TransformersBackend(cfg, **kwargs)
