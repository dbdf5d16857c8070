"""Tiny maps end to end through the Python API: border placement, resume, settings round trip."""
import json
import os

import numpy as np
import pytest

from ab.gpt.brute.fract.boundary import dimension, runner
from ab.gpt.brute.fract.boundary.config import Axis, BoundaryConfig


def _cfg(**kw):
    base = dict(x=Axis("lr0", 1.0, 1e5, 24, True), y=Axis("lr1", 1.0, 1e5, 24, True), steps=100, tile=12, chunk=200)
    base.update(kw)
    return BoundaryConfig(**base)


def test_small_lr_converges_huge_lr_diverges(tmp_path):
    res = runner.compute_map(_cfg(), str(tmp_path))
    conv = res.arrays["converged"]
    assert conv.shape == (24, 24)
    assert conv[:6].mean() > 0.95  # output-layer lr 1 .. ~20: trains
    assert conv[-6:].mean() < 0.05  # output-layer lr ~5e3 .. 1e5: blows up
    s = res.scores
    assert np.array_equal(s < 0, conv)  # score sign carries the outcome
    assert dimension.border_mask(s).any()
    # the border is one curve across the image: every column switches between the two regions
    assert all(conv[:, j].any() and not conv[:, j].all() for j in range(24))


class Stop(Exception):
    pass


def test_resume_computes_only_missing_tiles(tmp_path):
    cfg = _cfg(x=Axis("lr0", 1.0, 1e5, 16, True), y=Axis("lr1", 10.0, 1e4, 16, True), steps=60, tile=8, n_data=32)
    seen = []

    def stop_after_two(i, n, computed):
        seen.append(computed)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        runner.compute_map(cfg, str(tmp_path / "a"), on_tile=stop_after_two)
    files = [f for f in os.listdir(tmp_path / "a" / "tiles") if f.startswith("tile_")]
    assert len(files) == 2 and not any(f.endswith(".tmp") for f in os.listdir(tmp_path / "a" / "tiles"))
    log = []
    resumed = runner.compute_map(cfg, str(tmp_path / "a"), on_tile=lambda i, n, c: log.append(c))
    assert log == [False, False, True, True]
    assert resumed.stats == {"computed": 2, "reused": 2, "tiles": 4}
    fresh = runner.compute_map(cfg, str(tmp_path / "b"))
    for k in ("sum", "final", "probe", "converged"):
        assert np.array_equal(resumed.arrays[k], fresh.arrays[k])


def test_other_settings_refuse_existing_tiles(tmp_path):
    cfg = _cfg(x=Axis("lr0", 1.0, 10.0, 4, True), y=Axis("lr1", 1.0, 10.0, 4, True), steps=25, n_data=8)
    runner.compute_map(cfg, str(tmp_path))
    with pytest.raises(ValueError, match="different settings"):
        runner.compute_map(_cfg(x=cfg.x, y=cfg.y, steps=26, n_data=8), str(tmp_path))


def test_per_pixel_seeds_change_pixels_shared_do_not(tmp_path):
    ax = Axis("lr0", 1.0, 1.0001, 3, True)  # nearly equal lrs everywhere
    kw = dict(x=ax, y=Axis("lr1", 1.0, 1.0001, 3, True), steps=20, n_data=8, readout="final")
    shared = runner.compute_map(_cfg(**kw), str(tmp_path / "s")).scores
    per = runner.compute_map(_cfg(seed_mode="per_pixel", **kw), str(tmp_path / "p")).scores
    assert np.ptp(shared) < 1e-3 * np.abs(shared).max()
    assert np.ptp(per) > 1e-2 * np.abs(per).max()


def test_config_json_round_trip_and_validation():
    cfg = _cfg(momentum=0.5, norm=True, batch_size=16, dtype="float64", seed_mode="per_pixel")
    back = BoundaryConfig.from_json(cfg.to_json())
    assert back == cfg and back.fingerprint() == cfg.fingerprint()
    assert json.loads(cfg.to_json())["x"]["knob"] == "lr0"
    assert cfg.n_params == 272 and cfg.n_samples == 272
    assert _cfg(n_data=1).n_samples == 1 and _cfg(data_ratio=0.5).n_samples == 136
    for bad in (dict(activation="gelu"), dict(x=Axis("lr0", 2.0, 1.0, 4)), dict(x=Axis("lr0", 1.0, 2.0, 0)),
                dict(x=Axis("lr", 1.0, 2.0, 4)), dict(batch_size=1000), dict(momentum=1.0)):
        with pytest.raises(ValueError):
            _cfg(**bad).validate()
