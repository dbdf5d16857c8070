"""The real CLI in a subprocess, its error handling, and a tiny zoom GIF."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ab.gpt.brute.fract.boundary import __main__ as cli
from ab.gpt.brute.fract.boundary import zoom
from ab.gpt.brute.fract.boundary.config import Axis, BoundaryConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOD = "ab.gpt.brute.fract.boundary"


def test_cli_map_writes_array_metadata_and_images(tmp_path):
    out = tmp_path / "m"
    args = ["map", "--res-x", "20", "--res-y", "16", "--x-lo", "1", "--x-hi", "1e5", "--y-lo", "1", "--y-hi", "1e5",
            "--steps", "60", "--n-data", "64", "--seed", "7", "--maps", str(out), "--quiet"]
    r = subprocess.run([sys.executable, "-m", MOD, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    arr = np.load(out / "map.npy")
    assert arr.shape == (16, 20) and (arr < 0).any() and (arr > 0).any()
    meta = json.loads((out / "map.json").read_text())
    assert meta["config"]["steps"] == 60 and meta["seed"] == 7 and meta["config"]["x"]["n"] == 20
    assert meta["timing"]["seconds"] > 0 and meta["n_samples"] == 64
    raw = np.asarray(Image.open(out / "map_raw.png").convert("RGB"))
    assert raw.shape == (16, 20, 3)
    assert len(np.unique(raw.reshape(-1, 3), axis=0)) > 10  # many shades, not a flat image
    # converged (negative) pixels are blue-ish, diverged red-ish; raw PNG rows run top = high y
    flipped = raw[::-1].astype(int)
    assert np.all((flipped[..., 2] > flipped[..., 0]) == (arr < 0))
    fig = Image.open(out / "map.png")
    assert fig.size == (900, 760)
    assert len(np.unique(np.asarray(fig.convert("RGB")).reshape(-1, 3), axis=0)) > 50
    # dimension subcommand on the written map
    r = subprocess.run([sys.executable, "-m", MOD, "dimension", str(out), "--plot", str(tmp_path / "d.png")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 0.5 < json.loads(r.stdout.strip().splitlines()[-1])["median_dimension"] < 2.1
    assert (tmp_path / "d.png").stat().st_size > 0


@pytest.mark.parametrize("bad", [
    ["--res", "0"],
    ["--x-lo", "10", "--x-hi", "1"],
    ["--activation", "swish"],
    ["--res", "many"],
    ["--y-knob", "lr", "--x-knob", "lr0"],
])
def test_bad_input_one_line_error_exit_2_nothing_written(tmp_path, capsys, bad):
    out = tmp_path / "never"
    rc = cli.main(["map", *bad, "--maps", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not out.exists()


def test_bad_input_real_process(tmp_path):
    r = subprocess.run([sys.executable, "-m", MOD, "map", "--x-lo", "-1", "--maps", str(tmp_path / "x")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "lo > 0" in r.stderr
    assert not (tmp_path / "x").exists()


def test_zoom_gif_has_frames_that_differ(tmp_path):
    cfg = BoundaryConfig(x=Axis("lr0", 1.0, 1e5, 12, True), y=Axis("lr1", 1.0, 1e5, 12, True),
                         steps=40, n_data=24, tile=12)
    out = zoom.run_zoom(cfg, str(tmp_path), frames=3, factor=3.0)
    # centre found on the border of the scout map
    cx, cy = out["centre"]
    assert 1.0 < cx < 1e5 and 1.0 < cy < 1e5
    gif = Image.open(out["paths"]["gif"])
    assert gif.n_frames == 3
    frames = []
    for k in range(3):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("RGB")).copy())
    assert frames[0].shape[0] >= 256
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])
    spans = [f["x"][1] / f["x"][0] for f in out["meta"]["frames"]]
    np.testing.assert_allclose(np.log10(spans[1:]), np.log10(spans[:-1]) / 3.0)
