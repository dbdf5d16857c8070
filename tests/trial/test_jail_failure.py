"""A jail that cannot start is the machine's failure, not the model's: the run stops with that error and
records no verdict on any model (a model recorded invalid or failed would be skipped by every rerun)."""
import sys

import pytest

from ab.gpt.brute.fract.generation.generate import generate
from ab.gpt.brute.fract.generation.manifest import Manifest
from ab.gpt.brute.fract.space.registry import build_registry
from ab.gpt.brute.fract.space.space import Space
from ab.gpt.brute.fract.trial import JailError, jail


def test_generation_stops_without_recording_models_when_the_jail_cannot_start(tmp_path, monkeypatch):
    monkeypatch.setattr(jail, "worker_argv", lambda cfg, control_fd=3: [sys.executable, "-c", "raise SystemExit(3)"])
    reg = build_registry(third_party=False)
    specs = list(Space.default(reg).with_values(depth=(1,), columns=(1, 2), channels=((8,),)))[:3]
    with pytest.raises(JailError, match="the jail did not start"):
        generate(specs, reg, tmp_path / "out", limit=None, generator="enumerate", workers=1)
    assert Manifest.load(tmp_path / "out").records == {}
    assert not list((tmp_path / "out").glob("*.py"))
