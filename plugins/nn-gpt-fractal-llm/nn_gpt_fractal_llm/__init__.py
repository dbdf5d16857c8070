"""nn-gpt-fractal-llm: an LLM generator plugin for nn-gpt-fractal (`AlterNNFN --generator llm`)."""

__version__ = "0.1.0"
