"""Copy the repository's conf/llm and conf/prompt into the plugin's package data.

    python plugins/nn-gpt-fractal-llm/sync_conf.py

The top-level conf/ is the one source of truth; the copy lets an installed plugin find its defaults.
tests/llm/test_config.py fails while the two differ.
"""
from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_CONF = HERE.parents[1] / "conf"
PACKAGE_CONF = HERE / "nn_gpt_fractal_llm" / "conf"


def main() -> None:
    for kind in ("llm", "prompt"):
        dst = PACKAGE_CONF / kind
        dst.mkdir(parents=True, exist_ok=True)
        for old in dst.glob("*.json"):
            old.unlink()
        for src in sorted((REPO_CONF / kind).glob("*.json")):
            shutil.copy2(src, dst / src.name)
            print(f"{src} -> {dst / src.name}")


if __name__ == "__main__":
    main()
