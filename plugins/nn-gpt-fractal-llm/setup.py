"""Packs the repository's single conf/llm and conf/prompt into the plugin at build time.

The configs are committed once, at <repo>/conf. Building from a source checkout copies them into the
wheel as nn_gpt_fractal_llm/conf (and into an sdist, so a wheel built from that sdist has them too).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
REPO_CONF = HERE.parents[1] / "conf"  # <repo>/plugins/nn-gpt-fractal-llm/setup.py -> <repo>/conf
KINDS = ("llm", "prompt")
PACKAGE = "nn_gpt_fractal_llm"


def _copy_conf(package_dir: Path) -> None:
    """conf/<kind>/*.json from the repository into `package_dir`/conf, when building from a checkout."""
    if HERE.parent.name != "plugins" or not REPO_CONF.is_dir():  # building from an sdist: the configs are already in the package
        return
    for kind in KINDS:
        dst = package_dir / "conf" / kind
        shutil.rmtree(dst, ignore_errors=True)  # a config removed from conf/ leaves no stale copy behind
        dst.mkdir(parents=True)
        for src in sorted((REPO_CONF / kind).glob("*.json")):
            shutil.copyfile(src, dst / src.name)


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.dry_run:
            _copy_conf(Path(self.build_lib) / PACKAGE)


class Sdist(sdist):
    def make_release_tree(self, base_dir, files) -> None:
        super().make_release_tree(base_dir, files)
        _copy_conf(Path(base_dir) / PACKAGE)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
