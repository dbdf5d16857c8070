"""The study's statistics on tables with known structure: a real effect is found with a CI that holds it, no
effect is not, the interaction test separates additive from interacting cells, and Spearman's CI is right."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ab.gpt.brute.fract.study import analysis
from ab.gpt.brute.fract.study.spec import parse


def study(tmp_path):
    raw = {"study": {"name": "t"}, "space": {"norm": ["none", "bn"], "act": ["relu", "gelu"]},
           "protocol": {"data": "d", "epochs": 3, "halving": {"rungs": [1]}}}
    return parse(raw, tmp_path / "study.toml")


def table(rng, n=200, bn_gain=0.05, interaction=0.0) -> pd.DataFrame:
    norm = rng.choice(["none", "bn"], n)
    act = rng.choice(["relu", "gelu"], n)
    depth = rng.integers(1, 4, n)
    columns = rng.integers(1, 4, n)
    acc = 0.3 + bn_gain * (norm == "bn") + interaction * ((depth == 3) & (columns == 3)) + rng.normal(0, 0.02, n)
    return pd.DataFrame({"model": [f"m{i}" for i in range(n)], "kind": "fractal", "stage": "breadth", "eval": "all",
                         "seed": 0, "epochs": 1, "accuracy": acc, "status": "trained", "norm": norm, "act": act,
                         "depth": depth, "columns": columns, "order": "conv-first", "dropout": "0",
                         "join": "mean", "drop_path": "none", "failed": acc <= analysis.CHANCE})


def test_a_real_effect_is_found_and_a_null_one_is_not(tmp_path):
    rng = np.random.default_rng(1)
    eff = analysis.dimension_effects(table(rng), "accuracy", np.random.default_rng(2), study(tmp_path))
    bn = eff[(eff.dimension == "norm") & (eff.level == "bn")].iloc[0]
    assert bn.reference == "none"  # the declared first level is the reference
    assert bn.diff_lo < 0.05 < bn.diff_hi and bn.p_holm < 0.001
    gelu = eff[(eff.dimension == "act") & (eff.level == "gelu")].iloc[0]
    assert gelu.diff_lo < 0 < gelu.diff_hi and gelu.p_holm > 0.05
    # Holm: adjusted p-values are at least the raw ones
    tested = eff.dropna(subset=["p"])
    assert (tested.p_holm >= tested.p - 1e-12).all()


@pytest.mark.parametrize("interaction, significant", [(0.0, False), (0.08, True)])
def test_interaction_test_tells_additive_from_interacting_cells(interaction, significant):
    rng = np.random.default_rng(3)
    cells, test = analysis.nc_table(table(rng, n=400, interaction=interaction))
    assert len(cells) == 9 and test["df"][0] == 4  # (3 - 1) x (3 - 1) interaction terms
    assert (test["p"] < 0.05) == significant


def test_bootstrap_spearman_matches_scipy_per_resample():
    rng = np.random.default_rng(4)
    x = rng.normal(size=25)
    y = x + rng.normal(size=25)
    boots = analysis.boot_spearman(x, y, np.random.default_rng(5))
    idx = np.random.default_rng(5).integers(0, 25, (analysis.BOOT, 25))
    ref = np.array([st.spearmanr(x[i], y[i])[0] for i in idx])
    assert np.allclose(boots, ref)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    assert lo < st.spearmanr(x, y)[0] < hi
