"""End to end: a real small sweep -> report CLI -> the page in headless Chromium. Every image must load
and the summary cells must show the numbers computed here, independently, from the raw result files."""
import functools
import html
import http.server
import json
import re
import sqlite3
import statistics
import subprocess
import threading
from pathlib import Path

import pytest

from ab.gpt.brute.fract.report.figures import BUILDERS

from .sweep import run_module

pytestmark = pytest.mark.slow

# reads the report from the same origin and writes what the browser sees into #probe
HARNESS = """<!DOCTYPE html><html><body>
<iframe id="f" src="report.html" style="width:1280px;height:900px"></iframe><pre id="probe">pending</pre>
<script>
document.getElementById('f').addEventListener('load', () => {
  const d = document.getElementById('f').contentDocument;
  const imgs = [...d.images].map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));
  const cells = {};
  d.querySelectorAll('td[data-key]').forEach(td => { cells[td.id] = {text: td.innerText.trim(), value: td.dataset.value}; });
  const board = [...d.querySelectorAll('#leaderboard-table tbody tr')].map(tr => tr.dataset.model);
  const sig = [...d.querySelectorAll('#significance li')].map(li => li.innerText);
  document.getElementById('probe').textContent = JSON.stringify({title: d.title, imgs, cells, board, sig});
});
</script></body></html>"""


def expected_from_raw(models: Path, results: Path) -> dict:
    """The summary numbers, recomputed from runs/*.json and the manifest without the report's code."""
    runs = [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]
    acc = {}
    for r in runs:
        if r["status"] == "trained":
            last = [s["epochs"][-1]["accuracy"] for s in r["seeds"] if s["status"] == "trained"]
            acc[r["name"]] = statistics.mean(last)
    finished = [r for r in runs if r["status"] in ("trained", "diverged", "out-of-memory", "timed-out", "error")]
    manifest = [json.loads(line) for line in (models / "manifest.jsonl").read_text().splitlines()]
    fractal = [a for n, a in acc.items() if n.startswith("FractalNet")]
    return {"generated": sum(m["status"] == "valid" for m in manifest), "evaluated": len(finished),
            "trained": len(acc), "success_rate": len(acc) / len(finished), "acc_mean": statistics.mean(acc.values()),
            "acc_median": statistics.median(acc.values()), "acc_max": max(acc.values()),
            "fractal_mean": statistics.mean(fractal), "best": max(acc, key=acc.get)}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def browse(chromium: str, folder: Path) -> dict:
    (folder / "harness.html").write_text(HARNESS)
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={folder / 'profile'}",
             "--virtual-time-budget=20000", "--dump-dom", f"http://127.0.0.1:{server.server_port}/harness.html"],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    m = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)
    assert m and m.group(1) != "pending", f"Chromium did not run the probe: {out.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1)))


def test_report_of_a_real_sweep_loads_in_chromium(real_sweep, chromium, tmp_path):
    models, results = real_sweep
    out, db = tmp_path / "report", models.parent / "db" / "ab.nn.db"  # NNEval registered the sweep there
    r = run_module("ab.gpt.brute.fract.report", "--results", str(results), "--models", str(models),
                   "--db", str(db), "--report", str(out), "--top", "5")
    assert r.returncode == 0, r.stderr
    assert "not drawn" not in r.stderr  # the sweep has what every figure needs
    for stem, _, _ in BUILDERS:
        assert (out / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / "figures" / f"{stem}.svg").read_text()[:2000]
    for name in ("summary", "leaderboard", "models", "seeds", "epochs", "baselines", "factors", "grid"):
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0

    page = browse(chromium, out)
    assert page["title"] == "Fractal sweep report"
    assert len(page["imgs"]) == len(BUILDERS)
    for img in page["imgs"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img

    exp = expected_from_raw(models, results)
    with sqlite3.connect(db) as con:
        exp["in_db"] = con.execute("SELECT COUNT(DISTINCT nn) FROM stat").fetchone()[0]
    assert exp["in_db"] == exp["trained"]
    cells = page["cells"]
    for key in ("generated", "evaluated", "trained", "in_db"):
        assert cells[f"sum-{key}-all"] == {"text": str(exp[key]), "value": str(exp[key])}, key
    for key, cell in (("success_rate", "sum-success_rate-all"), ("acc_mean", "sum-acc_mean-all"),
                      ("acc_median", "sum-acc_median-all"), ("acc_max", "sum-acc_max-all"),
                      ("fractal_mean", "sum-acc_mean-fractal")):
        assert float(cells[cell]["value"]) == pytest.approx(exp[key], abs=1e-12), key
        assert cells[cell]["text"] == f"{100 * exp[key]:.2f}%", key
    assert page["board"][0] == exp["best"]
    assert page["sig"] and "Welch" in page["sig"][0]

    base = (out / "tables" / "baselines.csv").read_text()
    assert "deepest column alone" in base and "plain, 5 layers" in base  # the matched baselines were found
