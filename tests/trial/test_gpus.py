"""GPU sweeps without a GPU: the --device parser, GPU selection and slot layout over a fake device list, the
jail's command line for one GPU, GPU-failure handling and GPU-balanced placement in real jails, and the
packing decision from recorded figures."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ab.gpt.brute.fract.sweep import evaluate
from ab.gpt.brute.fract.sweep.evaluate import ModelEntry, SweepConfig
from ab.gpt.brute.fract.trial import data
from ab.gpt.brute.fract.trial import TrialLimits, jail
from ab.gpt.brute.fract.trial.executors import LocalExecutor
from ab.gpt.brute.fract.trial.gpus import Gpu, device_nodes, gpu_fault, select, slot_gpus
from ab.gpt.brute.fract.trial.jail import JailConfig, bwrap_command
from ab.gpt.brute.fract.tune import gpu_packing, probe
from ab.gpt.brute.fract.tune.budget import ProbeBudget
from ab.gpt.brute.fract.tune.policies import SweepPolicies
from ab.gpt.brute.fract.tune.synthetic import ShapeClass
from ab.gpt.brute.fract.util.cli import parse_device

from .kit import jail_data, model, train_trial

REPO = Path(__file__).resolve().parents[2]
GPUS = [Gpu(0, "NVIDIA H100", "GPU-aaa", 0, 80 << 30), Gpu(1, "NVIDIA H100", "GPU-bbb", 1, 80 << 30),
        Gpu(2, "NVIDIA H100", "GPU-ccc", 3, 80 << 30)]  # GPU 2's device node is /dev/nvidia3
DEV = ["null", "zero", "nvidia0", "nvidia1", "nvidia3", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools",
       "nvidia-modeset", "nvidia-caps"]


@pytest.mark.parametrize("text,kind,indices", [
    ("auto", "auto", None), ("cpu", "cpu", None), ("cuda", "cuda", None), ("cuda:1", "cuda", (1,)),
    ("cuda:0,2", "cuda", (0, 2)), ("CUDA:2,0,2", "cuda", (2, 0))])
def test_device_parser(text, kind, indices):
    choice = parse_device(text)
    assert (choice.kind, choice.indices) == (kind, indices)
    assert parse_device(str(choice)) == choice  # the normalised text parses back to the same choice


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:a", "cuda:1;2", "cuda:-1", "cpu:0", ""])
def test_device_parser_refuses(text):
    with pytest.raises(ValueError, match="is not a device: use auto, cpu, cuda"):
        parse_device(text)
    with pytest.raises(ValueError, match="use cpu, cuda"):
        parse_device("auto", allow_auto=False)


def test_selection_over_a_fake_device_list():
    assert select(parse_device("cuda"), GPUS) == GPUS
    assert select(parse_device("auto"), GPUS) == GPUS
    assert select(parse_device("cuda:2,0"), GPUS) == [GPUS[2], GPUS[0]]
    assert select(parse_device("cpu"), GPUS) == [] and select(parse_device("auto"), []) == []
    with pytest.raises(ValueError, match=r"no GPU 5 here; this machine shows 3 GPU\(s\), cuda:0..cuda:2"):
        select(parse_device("cuda:1,5"), GPUS)
    with pytest.raises(ValueError, match="torch sees no CUDA device here; use --device cpu"):
        select(parse_device("cuda:0"), [])


def test_slots_alternate_gpus():
    assert [g.index for g in slot_gpus(GPUS[:2], 3)] == [0, 1, 0, 1, 0, 1]
    assert [g.index for g in slot_gpus(GPUS, 1)] == [0, 1, 2]
    assert slot_gpus([], 4) == []


def test_device_nodes_of_one_gpu():
    assert device_nodes(GPUS[2], DEV) == ["nvidia3", "nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidiactl"]
    assert device_nodes(GPUS[0], DEV)[0] == "nvidia0" and "nvidia1" not in device_nodes(GPUS[0], DEV)
    # minor unknown: every GPU node (CUDA_VISIBLE_DEVICES alone selects); no GPU: every nvidia node (Ray)
    assert device_nodes(Gpu(0, minor=None), DEV)[:3] == ["nvidia0", "nvidia1", "nvidia3"]
    assert device_nodes(None, DEV) == sorted(n for n in DEV if n.startswith("nvidia"))


def test_jail_command_for_one_gpu(tmp_path, monkeypatch):
    libs = tmp_path / "nvidia-libs"
    libs.mkdir()
    monkeypatch.setattr(jail, "dev_listing", lambda: DEV)
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{libs}:/nonexistent")
    cmd = bwrap_command(JailConfig(scratch=tmp_path / "s", gpu=GPUS[2]))
    pairs = list(zip(cmd, cmd[1:], cmd[2:]))
    bound = [src for kind, src, dst in pairs if kind == "--dev-bind" and src == dst]
    assert bound == ["/dev/nvidia3", "/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                     "/dev/nvidiactl"]
    assert ("--setenv", "CUDA_VISIBLE_DEVICES", "GPU-ccc") in pairs
    assert ("--setenv", "LD_LIBRARY_PATH", str(libs)) in pairs  # the driver's library folder, bound read-only
    assert ("--ro-bind", str(libs), str(libs)) in pairs and ("--ro-bind", "/sys", "/sys") in pairs
    assert cmd.index("--dev-bind") > cmd.index("--dev")  # on top of bwrap's minimal /dev
    cpu = bwrap_command(JailConfig(scratch=tmp_path / "s"))
    assert "--dev-bind" not in cpu and not any("CUDA_VISIBLE" in c or "LD_LIBRARY" in c for c in cpu)
    assert ("--ro-bind", "/sys", "/sys") not in list(zip(cpu, cpu[1:], cpu[2:]))


def test_driver_libraries_reached_through_links_are_bound(tmp_path, monkeypatch):
    real = tmp_path / "usr-local-nvidia" / "lib64"
    real.mkdir(parents=True)
    (real / "libcuda.so.580").write_bytes(b"")
    links = tmp_path / "lib-links"
    links.mkdir()
    (links / "libcuda.so.1").symlink_to(real / "libcuda.so.580")
    listing = (f"\tlibcudart.so.13 (libc6,x86-64) => /opt/cuda/libcudart.so.13\n"
               f"\tlibcuda.so.1 (libc6,x86-64) => {links}/libcuda.so.1\n")
    assert jail.driver_library_dirs(listing) == (str(links), str(real))
    monkeypatch.setattr(jail, "dev_listing", lambda: DEV)
    monkeypatch.setattr(jail, "driver_library_dirs", lambda: (str(links), str(real)))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    cmd = bwrap_command(JailConfig(scratch=tmp_path / "s", gpu=GPUS[2]))
    pairs = list(zip(cmd, cmd[1:], cmd[2:]))
    assert ("--ro-bind", str(links), str(links)) in pairs and ("--ro-bind", str(real), str(real)) in pairs
    assert not any("LD_LIBRARY" in c for c in cmd)  # ld.so.cache finds them; the environment stays as it was
    assert not any(str(real) in c for c in bwrap_command(JailConfig(scratch=tmp_path / "s")))


@pytest.mark.parametrize("message,kind", [
    ("RuntimeError: CUDA error: unknown error", "CUDA error"),
    ("RuntimeError: CUDA error: unspecified launch failure\nCompile with TORCH_USE_CUDA_DSA", "CUDA error"),
    ("RuntimeError: device cuda requested but torch sees no CUDA device", "no CUDA device"),
    ("RuntimeError: Found no NVIDIA driver on your system.", "no CUDA device"),
    ("NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.", "GPU lost"),
    ("RuntimeError: CUDA error: uncorrectable ECC error encountered", "Xid / ECC error"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", None),
    ("RuntimeError: CUDA error: device-side assert triggered", None),
    ("RuntimeError: mat1 and mat2 shapes cannot be multiplied (16x8 and 4x10)", None),
])
def test_gpu_faults_are_told_from_model_errors(message, kind):
    assert gpu_fault(message) == kind


@pytest.fixture(scope="module")
def prepared(cifar_dir, tmp_path_factory):
    return data.prepare(data.locate(cifar_dir), tmp_path_factory.mktemp("cache")).to_dict()


SHOW_GPU = model(top="import os", init="raise ValueError('sees ' + str(os.environ.get('CUDA_VISIBLE_DEVICES')))")
GPU_LOST = model(init="raise RuntimeError('CUDA error: unknown error')")


def test_jails_see_their_own_gpu_and_a_failing_gpu_is_retired(prepared):
    """Two fake GPUs, one slot each, real jails (the trials train on the CPU: the machine has no GPU)."""
    with LocalExecutor(0, TrialLimits(), data=jail_data(prepared), gpus=slot_gpus(GPUS[:2], 1)) as ex:
        assert ex.workers == 2 and ex.free() == 2
        both = [ex.submit(train_trial(SHOW_GPU, prepared)) for _ in range(2)]  # longest first: one per GPU
        assert ex.free() == 0
        assert sorted(f.result().message.split("sees ")[-1] for f in both) == ["GPU-aaa", "GPU-bbb"]
        # GPU 0 fails twice in a row: each trial fails naming it, then it gets no more trials
        for strike in (1, 2):
            res = ex.submit(train_trial(GPU_LOST, prepared)).result()
            assert res.status == "error" and res.message.startswith("GPU failure on cuda:0 (NVIDIA H100): CUDA error")
            assert ("gets no more trials" in res.message) == (strike == 2)
        assert ex.retired == {0: "CUDA error, 2 trials in a row"} and ex.free() == 1
        assert ex.submit(train_trial(SHOW_GPU, prepared)).result().message.endswith("sees GPU-bbb")
        # a model's own error is no strike against its GPU
        res = ex.submit(train_trial(model(init="raise ValueError('my bug')"), prepared)).result()
        assert res.message.endswith("my bug") and not res.message.startswith("GPU failure")
        for _ in range(2):
            ex.submit(train_trial(GPU_LOST, prepared)).result()
        # no GPU left: the sweep goes on to its end, every further trial failing with the reason at once
        assert ex.free() == 1
        res = ex.submit(train_trial(SHOW_GPU, prepared)).result(timeout=1)
        assert res.status == "error" and res.message.startswith("no working GPU left (cuda:0: CUDA error")


def test_packing_decision_from_recorded_figures():
    narrow = {1: 2100.0, 2: 4000.0, 4: 7300.0, 8: 7500.0}  # aggregate images/s at 1, 2, 4, 8 trials
    d = gpu_packing.decide(narrow, 300 << 20, 80 << 30)
    assert d["trials_per_gpu"] == 4 and "the fewest within 5% of the best aggregate (3.48x one trial)" in d["reason"]
    assert gpu_packing.decide({**narrow, 8: 9000.0}, 300 << 20, 80 << 30)["trials_per_gpu"] == 8
    # memory bounds it: 20 GiB per trial on an 80 GiB GPU leaves 1-3 (with the 0.9 share and a context each)
    d = gpu_packing.decide(narrow, 20 << 30, 80 << 30)
    assert d["trials_per_gpu"] == 2 and "4, 8 would not fit" in d["reason"]
    d = gpu_packing.decide(narrow, 100 << 30, 80 << 30)
    assert d["trials_per_gpu"] == 1 and "not even one fits" in d["reason"]
    assert gpu_packing.decide({1: 900.0, 2: 910.0, 4: 905.0, 8: 700.0}, 1 << 30, 80 << 30)["trials_per_gpu"] == 1
    with pytest.raises(ValueError):
        gpu_packing.decide({}, 0, 1)


def test_sweep_takes_trials_per_gpu_from_the_probe_figures(monkeypatch, tmp_path):
    """`--trials-per-gpu auto` on two fake GPUs, the probe's figures recorded: K from `decide`, no more slots than
    trials, a fixed K as given, and the Ray share 1/K."""
    recorded = {"measured": {"1": 2100.0, "2": 4000.0, "4": 7300.0, "8": 7500.0}, "peak_bytes": 300 << 20}
    seen = []
    monkeypatch.setattr(gpu_packing, "measure", lambda shape, batch, variant, device, cache: (
        seen.append((shape.key, variant, device)) or recorded, True))
    monkeypatch.setattr(gpu_packing, "cache_key", lambda device, shape, batch: f"fake GPU | {shape} | {batch}")
    pol = SweepPolicies(False, False, "off", "auto", "cuda", 16, 1, 100, tmp_path / "tune.json", lambda m: None)
    spec = {"channels": [16, 32, 64], "columns": 2, "depth": 3}
    many = [ModelEntry(f"M{k}", Path(f"M{k}.py"), spec, 10**6) for k in range(10)]
    cfg = SweepConfig(models=tmp_path, out=tmp_path, device="cuda")
    k, rec = evaluate.decide_trials_per_gpu(cfg, pol, many, GPUS[:2], lambda m: None)
    assert k == 4 and rec["shape"] == "w16-32-64_c2" and seen == [("w16-32-64_c2", "fp32", "cuda:0")]
    k, _ = evaluate.decide_trials_per_gpu(cfg, pol, many[:3], GPUS[:2], lambda m: None)
    assert k == 2  # 3 trials on 2 GPUs: 2 slots per GPU are enough
    cfg.trials_per_gpu = 3
    assert evaluate.decide_trials_per_gpu(cfg, pol, many, GPUS[:2], lambda m: None)[0] == 3
    assert evaluate.ray_gpus_per_trial(cfg, True, 4) == 0.25 and evaluate.ray_gpus_per_trial(cfg, False, 4) == 0.0
    cfg.gpus_per_trial = 0.5
    assert evaluate.ray_gpus_per_trial(cfg, True, 4) == 0.5


def test_the_packing_probe_runs_only_where_the_sweep_pays_for_it(monkeypatch, tmp_path):
    """A sweep whose probe budget is below the probe's cost keeps 1 trial per GPU and says why; figures already
    cached are used whatever the budget; a probe that runs is charged to the budget."""
    probed = []
    entry = {"measured": {"1": 2100.0, "2": 4000.0, "4": 7300.0, "8": 7500.0}, "peak_bytes": 300 << 20, "probe_s": 9.0}

    def fake_measure(shape, batch, variant, device, cache):  # the real one's caching, a recorded probe
        return cache.get_or_measure("gpu-packing", gpu_packing._key(shape, batch, variant, device),
                                    lambda: probed.append(shape.key) or entry)

    monkeypatch.setattr(gpu_packing, "measure", fake_measure)
    monkeypatch.setattr(gpu_packing, "cache_key", lambda device, shape, batch: f"fake GPU | {shape} | {batch}")
    pol = SweepPolicies(False, False, "off", "auto", "cuda", 16, 1, 100, tmp_path / "tune.json", lambda m: None)
    spec = {"channels": [16, 32, 64], "columns": 2, "depth": 3}
    many = [ModelEntry(f"M{k}", Path(f"M{k}.py"), spec, 10**6) for k in range(10)]
    cfg = SweepConfig(models=tmp_path, out=tmp_path, device="cuda")
    said = []
    pol.budget = ProbeBudget.for_sweep(100.0)  # 5 s of probing for a ~100 s sweep: less than the probe takes
    k, rec = evaluate.decide_trials_per_gpu(cfg, pol, many, GPUS[:2], said.append)
    assert k == 1 and probed == [] and "not probed: probing trials per GPU would take ~15.0 s" in rec["reason"]
    assert "trials per GPU auto: 1 (not probed" in said[0]
    pol.budget = ProbeBudget.for_sweep(1000.0)  # 50 s: the probe runs and is charged
    assert evaluate.decide_trials_per_gpu(cfg, pol, many, GPUS[:2], said.append)[0] == 4
    assert probed == ["w16-32-64_c2"] and pol.budget.spent_s == 9.0
    pol.budget = ProbeBudget.for_sweep(10.0)  # cached figures cost nothing: used even on a tiny sweep
    assert evaluate.decide_trials_per_gpu(cfg, pol, many, GPUS[:2], said.append)[0] == 4 and len(probed) == 1


def test_packed_trials_share_the_gpu_memory_for_checkpointing(tmp_path):
    pol = SweepPolicies(False, False, "off", "auto", "cuda", 16, 1, 100, tmp_path / "tune.json", lambda m: None)
    assert "gpu_share" not in pol.for_trial(None, None)[0]
    pol.trials_per_gpu = 4
    assert pol.for_trial(None, None)[0]["gpu_share"] == 0.25
    assert pol.variant_for(ShapeClass.of((16, 32), 1)) == "fp32"


def test_cuda_probes_the_dtype_the_model_will_use(monkeypatch):
    for bf16, dtype in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
        assert probe.variants("cuda") == ["fp32", "fp32+cl", dtype, f"{dtype}+cl"]


def test_packing_probe_mechanics_on_the_cpu():
    """The probe's processes and rounds (on a GPU each runs on the device): every count gets a figure per round."""
    r = gpu_packing.probe_rounds(ShapeClass.of((4, 8), 1), 8, "fp32", "cpu", counts=(1, 2), rounds=2, seconds=0.1)
    assert set(r["rounds"]) == {1, 2} and all(len(v) == 2 and min(v) > 0 for v in r["rounds"].values())


def test_nneval_device_errors_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args, want in ((["--device", "cuda:x"], "'cuda:x' is not a device: use auto, cpu, cuda or cuda:N or cuda:0,2"),
                       (["--device", "cuda:1", "--plan"], "Invalid value for --device: torch sees no CUDA device"),
                       (["--trials-per-gpu", "2", "--gpus-per-trial", "0.5", "--executor", "ray"],
                        "give --trials-per-gpu or --gpus-per-trial, not both")):
        proc = subprocess.run([sys.executable, "-m", "ab.gpt.NNEval", "--models", str(tmp_path), *args], env=env,
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2 and want in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
