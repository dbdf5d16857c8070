"""The main CLI (nn-gpt-fractal) reaches the report and the other tools."""
from .sweep import run_module

CLI = "ab.gpt.brute.fract.cli"


def test_main_cli_lists_and_delegates(tmp_path):
    r = run_module(CLI, "--help")
    assert r.returncode == 0
    for name in ("space", "generate", "plan", "eval", "report", "boundary", "lemur", "plugins"):
        assert f"  {name} " in r.stdout
    r = run_module(CLI, "eval", "--help")
    assert r.returncode == 0 and "--seeds" in r.stdout and "--plan" not in r.stdout
    r = run_module(CLI, "plan", "--help")
    assert r.returncode == 0 and "--schedule" in r.stdout and "--lr " not in r.stdout
    r = run_module(CLI, "lemur", "migrate", "--help")
    assert r.returncode == 0 and "--results" in r.stdout
    r = run_module(CLI, "report", "--results", str(tmp_path / "none"), "--report", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stderr.startswith("error: results folder") and "Traceback" not in r.stderr
