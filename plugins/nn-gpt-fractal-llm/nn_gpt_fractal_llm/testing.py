"""Offline stand-ins for an LLM, for tests and the bench's offline mode: a loopback HTTP server that
speaks the OpenAI chat-completions protocol with scripted replies, and a tiny randomly initialised causal
LM with a byte-level tokenizer, built from a config (no download). Neither is a real model."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


class ChatServer:
    """A real HTTP server on 127.0.0.1 answering POST /v1/chat/completions like an OpenAI-compatible
    endpoint. `replies` is a list of contents served in order (the last one repeats), or a function
    of the request body returning the content."""

    def __init__(self, replies: list[str] | Callable[[dict], str] | None = None) -> None:
        self.replies = replies if replies is not None else ["[]"]
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["_headers"] = dict(self.headers)
                server.requests.append(body)
                if callable(server.replies):
                    content = server.replies(body)
                else:
                    content = server.replies[min(len(server.requests), len(server.replies)) - 1]
                prompt = sum(len(m["content"]) for m in body["messages"]) // 4
                reply = {"id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion",
                         "created": int(time.time()), "model": body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "logprobs": None, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": prompt, "completion_tokens": len(content) // 4,
                                   "total_tokens": prompt + len(content) // 4}}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def config(self, folder: Path, **extra) -> Path:
        cfg = {"backend": "openai", "base_url": self.base_url, "model": "stub-model", "context_length": 32768,
               "api_key_env": "STUB_LLM_KEY", "generation": {"max_new_tokens": 512, "temperature": 0.0}, **extra}
        return write_json(folder / "stub-llm.json", cfg)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


ASSISTANT = "<|assistant|>"


def build_tiny_lm(folder: Path) -> Path:
    """A 2-layer Llama with random weights and a byte-level BPE tokenizer (no merges), saved to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from .backends import import_transformers

    tf = import_transformers()
    LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast = (tf.LlamaConfig, tf.LlamaForCausalLM,
                                                              tf.PreTrainedTokenizerFast)

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = ["<|bos|>", "<|eos|>", "<|pad|>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>")
    fast.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32768,
                         bos_token_id=vocab["<|bos|>"], eos_token_id=vocab["<|eos|>"],
                         pad_token_id=vocab["<|pad|>"])
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder




class ForcedText:
    """A `prefix_allowed_tokens_fn` for `model.generate` that makes the tiny LM emit `texts` (one per
    call, the last repeating) token by token after the chat template's assistant marker, then EOS."""

    def __init__(self, tokenizer, texts: list[str]) -> None:
        self.tokenizer = tokenizer
        self.targets = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        self.marker = tokenizer(ASSISTANT, add_special_tokens=False)["input_ids"]
        self.calls = 0
        self._prompt: list[int] = []
        self._last_len = -1

    def __call__(self, batch_id: int, input_ids) -> list[int]:
        ids = input_ids.tolist()
        m = len(self.marker)
        # one generate call grows the sequence by one token per step; anything else is a new call
        if len(ids) != self._last_len + 1 or ids[:len(self._prompt)] != self._prompt:
            end = next(i + m for i in range(len(ids) - m, -1, -1) if ids[i:i + m] == self.marker)
            self._prompt = ids[:end]
            self.calls += 1
        self._last_len = len(ids)
        target = self.targets[min(self.calls, len(self.targets)) - 1]
        k = len(ids) - len(self._prompt)
        return [target[k]] if k < len(target) else [self.tokenizer.eos_token_id]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
