"""Entry point `nn_gpt_fractal: llm`: registers the `llm` generator. Importing it loads no LLM library."""
from __future__ import annotations

from ab.gpt.brute.fract.space.generators import Generator
from ab.gpt.brute.fract.space.hookspecs import hookimpl

from .generator import NAME, llm_proposals

DESCRIPTION = ("LLM proposals (conf/llm, conf/prompt): JSON specs or whole model files, informed by earlier "
               "results; options via --gen-opt (llm=, prompt=, mode=spec|code, max_calls=, ...)")


@hookimpl
def fractal_generators():
    return [Generator(NAME, DESCRIPTION, llm_proposals)]
