"""Quick start: generate a small embedded set of FractalNet variants and evaluate them for one epoch.

    python -m ab.gpt.brute.fract.demo      (or: make demo)

Six variants (depth 2-3, columns 1-3, channels 16,32,64, conv3x3-bn-relu) go to <LEMUR root>/out/fractal;
NNEval trains each for one epoch on CIFAR-10 in a bubblewrap jail, writes <LEMUR root>/new_lemur and
registers into <LEMUR root>/db/ab.nn.db, prints the summary table and writes the HTML report to
<LEMUR root>/out/report/. Data: $NN_GPT_FRACTAL_CIFAR, else
the shared real subset beside the repository (../shared/data/cifar-10-subset), else nn-dataset's usual
location (downloaded when online); on the full dataset the demo trains on the first 10,000 images.
Rerunning it is cheap: finished models are skipped.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .trial.data import DATA_ENV, DataError, locate
from .sweep.evaluate import SweepConfig, run_sweep
from .util.paths import lemur_root, models_dir, new_lemur_dir
from .report.build import build_report
from ab.gpt.NNEval import print_summary

SPACE = ["--depth", "2-3", "--columns", "1-3", "--channels", "16,32,64", "--conv", "conv3x3", "--norm", "bn",
         "--act", "relu", "--order", "conv-norm-act", "--dropout", "0", "--join", "mean", "--limit", "6"]
PATTERN = "FractalNet-N[23]-C[123]-w16-conv3x3-bn-relu-mean-maxpool-gap-*"  # exactly the 6 points above
SUBSET = Path("shared") / "data" / "cifar-10-subset" / "cifar-10-batches-py"


def find_data() -> tuple[str | None, bool]:
    """(data folder or None for nn-dataset's location, whether it is a small subset)."""
    if os.environ.get(DATA_ENV):
        return os.environ[DATA_ENV], True
    for base in (lemur_root().parent, Path(__file__).resolve().parents[4].parent):
        if (base / SUBSET).is_dir():
            return str(base / SUBSET), True
    return None, False


def main() -> int:
    out = models_dir()
    print(f"1/2 generating 6 small FractalNet variants into {out}", flush=True)
    gen = subprocess.run([sys.executable, "-m", "ab.gpt.brute.fract.AlterNNFN", *SPACE, "--models", str(out)])
    if gen.returncode != 0:
        return gen.returncode
    data_dir, small = find_data()
    try:
        print(f"2/2 training 1 epoch each on CIFAR-10 from {locate(data_dir)}", flush=True)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = SweepConfig(models=out, out=new_lemur_dir(), epochs=1, data_dir=data_dir,
                      train_limit=None if small else 10_000, test_limit=None if small else 2_000,
                      filter=PATTERN, workers=2, threads=1)  # two single-thread workers: no OpenMP contention
    outcome = run_sweep(cfg, say=lambda m: print(m, file=sys.stderr))
    print_summary(outcome, cfg.out)
    print(f"results: {cfg.out} (runs/, stat/train/, summary.json); DB: {lemur_root() / 'db' / 'ab.nn.db'}")

    db = lemur_root() / "db" / "ab.nn.db"  # where run_sweep registered: the report counts the DB rows
    report = build_report(cfg.out, lemur_root() / "out" / "report", models_dir=out, db=db if db.is_file() else None,
                          top=6, title="nn-gpt-fractal demo")
    print(f"report: {report.html} (open it in a browser; figures and CSV tables beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
