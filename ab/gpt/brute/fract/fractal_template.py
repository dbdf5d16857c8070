"""The paper's template module: renders an `ArchSpec` into a LEMUR model file. The implementation is
`generation/template.py` (Jinja2 template `generation/templates/fractal_net.py.j2`)."""
from .generation.template import code_hash, helpers, op_lines, policy_constants, render  # noqa: F401
