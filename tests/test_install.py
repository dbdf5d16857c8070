"""Both ways of running: the installed package from any folder, and the source checkout."""
import sysconfig

GEN = "ab.gpt.brute.fract.AlterNNFN"
PROBE = "import ab.nn, ab.nn.util, ab.gpt.brute.fract.AlterNNFN as m; print(m.__file__)"


def test_installed_package_runs_from_any_directory(cli, tmp_path):
    r = cli(GEN, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "Generate and validate FractalNet variants" in r.stdout
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(sysconfig.get_paths()["purelib"])  # nn-dataset's ab/ holds ours


def test_source_checkout_runs_at_repo_root(cli, repo):
    r = cli(GEN, "--help", cwd=repo)
    assert r.returncode == 0
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", PROBE], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(repo / "ab" / "gpt" / "brute" / "fract" / "AlterNNFN.py")
