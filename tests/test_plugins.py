"""Real pluggy entry points: the extra-layers plugin installed with pip, and a plugin that fails."""
import subprocess
import sys

import pytest

from ab.gpt.brute.fract.space.registry import build_registry

GEN = "ab.gpt.brute.fract.AlterNNFN"
FRACTAL = "ab.gpt.brute.fract.cli"


@pytest.fixture(scope="module")
def plugin_site(repo, tmp_path_factory):
    """pip-install the plugin package (no dependencies) into its own folder."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(repo / "plugins" / "nn-gpt-fractal-extra-layers")],
                   check=True, capture_output=True, text=True)
    return site


def test_plugin_options_enter_the_space_and_generate_valid_models(cli, plugin_site, tmp_path):
    env = {"PYTHONPATH": str(plugin_site)}
    r = cli(FRACTAL, "plugins", env=env)
    assert r.returncode == 0, r.stderr
    assert "extra_layers:" in r.stdout and "dwsep3x3" in r.stdout and "gnorm" in r.stdout
    r = cli(FRACTAL, "space", env=env)
    conv_line = next(line for line in r.stdout.splitlines() if line.startswith("conv "))
    assert "dwsep3x3" in conv_line and "canonical specs: 2016" not in r.stdout  # the default space grew
    out = tmp_path / "models"
    r = cli(GEN, "--conv", "dwsep3x3", "--norm", "gnorm", "--depth", "1-2", "--columns", "1-2",
            "--channels", "8,16", "--dropout", "0", "--limit", "4", "-q", "--models", str(out), env=env)
    assert r.returncode == 0, r.stderr
    files = sorted(out.glob("*.py"))
    assert len(files) == 4
    code = files[0].read_text()
    assert "groups=c_in" in code and "nn.GroupNorm(group_count(" in code and "def group_count" in code
    # without the plugin these options are unknown
    r = cli(GEN, "--conv", "dwsep3x3", "--models", str(tmp_path / "other"))
    assert r.returncode == 2 and "unknown conv option 'dwsep3x3'" in r.stderr


def test_a_broken_plugin_is_named_in_one_line_and_the_rest_works(cli, tmp_path):
    site = tmp_path / "site"
    dist = site / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[nn_gpt_fractal]\nbroken = no_such_module_anywhere\n")
    r = cli(FRACTAL, "plugins", env={"PYTHONPATH": str(site)})
    assert r.returncode == 0
    errors = [line for line in r.stderr.splitlines() if "broken" in line]
    assert len(errors) == 1 and "plugin 'broken' failed to load: ModuleNotFoundError" in errors[0]
    assert "builtin:" in r.stdout and "conv3x3" in r.stdout


class DuplicateName:
    from ab.gpt.brute.fract.space.hookspecs import hookimpl

    @hookimpl
    def fractal_layer_families(self):
        from ab.gpt.brute.fract.space.families import LayerFamily, LayerOption

        return [LayerFamily("dup", (LayerOption("relu", "act", "nn.ReLU()"),))]


def test_a_plugin_clashing_with_a_builtin_is_refused_whole():
    reg = build_registry(third_party=False, extra={"dup": DuplicateName()})
    assert reg.errors == ["plugin 'dup' failed to load: ValueError: layer option 'relu' is already registered"]
    assert "dup" not in reg.contributions and reg.options["relu"].code == "nn.ReLU()"
