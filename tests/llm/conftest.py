"""Fixtures for the LLM plugin tests: the plugin on sys.path (source tree), a loopback chat-completions
server and a tiny random causal LM (both from nn_gpt_fractal_llm.testing)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SRC = REPO / "plugins" / "nn-gpt-fractal-llm"
if str(PLUGIN_SRC) not in sys.path:  # the plugin from the source tree, installed or not
    sys.path.insert(0, str(PLUGIN_SRC))

from nn_gpt_fractal_llm.testing import ChatServer, build_tiny_lm  # noqa: E402


@pytest.fixture
def chat_server():
    server = ChatServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture
def lemur_root(tmp_path, monkeypatch) -> Path:
    """An empty LEMUR root, so no test reads or writes the checkout's new_lemur/, db/ or out/."""
    root = tmp_path / "lemur"
    root.mkdir()
    monkeypatch.setenv("NN_GPT_FRACTAL_ROOT", str(root))
    return root
