"""NNGPT extensions: fractal network generation and evaluation (nn-gpt-fractal)."""
