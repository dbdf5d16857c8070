"""Hostile models aimed at budgets and provenance, run with the static check OFF: each is ended at its budget
(or refused) with the recorded cause and figure, leaves nothing on the host, and the innocent model trained
right after it gets exactly the accuracy and losses it gets alone.

Each case prints one line (what the model tried, what was recorded, host memory before and after) for the
closing note; run with -s to see them.
"""
from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path

import pytest

from ab.gpt.brute.fract.trial import data
from ab.gpt.brute.fract.sweep.evaluate import seed_result
from ab.gpt.brute.fract.lemur.stats import EXTRA, stat_trials
from ab.gpt.brute.fract.trial import TrialLimits
from ab.gpt.brute.fract.trial.cgroup import CgroupUnavailable, Cgroups
from ab.gpt.brute.fract.trial.executors import LocalExecutor
from ab.gpt.brute.fract.trial.jail import hardening
from ab.gpt.brute.fract.trial.session import BEST, EXIT_GRACE, STATE

from .kit import INNOCENT, jail_data, model, model_processes, train_trial

LIMITS = TrialLimits(cpu_s=120, memory_gb=1, nproc=64, disk_mb=512, max_files=10_000)
RUNNER = "sys.modules['ab.gpt.brute.fract.trial.runner']"

SHM_FILL = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmat.restype = ctypes.c_void_p\n"
            "for _ in range(COUNT):\n    i = libc.shmget(0, 300 << 20, 0o1666)\n    a = libc.shmat(i, None, 0)\n"
            "    ctypes.memset(a, 1, 300 << 20)\n    libc.shmdt(ctypes.c_void_p(a))")
SHM_LIST = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "seen = open('/proc/sysvipc/shm').read().splitlines()[1:]\n"
            "got = [libc.shmat(k, None, 0) for k in range(0, 65536, 1)]\n"
            "raise RuntimeError(f'segments listed: {len(seen)}, attached: {sum(1 for g in got if g not in (-1, None))}')")
MEMFD = "import os\nfd = os.memfd_create('x')\nfor _ in range(1800):\n    os.write(fd, b'x' * (1 << 20))"
CHILDREN = ("import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        b = bytearray(350 << 20)\n"
            "        for i in range(0, len(b), 4096):\n            b[i] = 1\n        time.sleep(60)\n        os._exit(0)\n"
            "time.sleep(5)")  # the children's 1,750 MB pass the 1,024 MB budget within a second
BIG_FILES = ("for k in range(3):\n    with open(f'big{k}', 'wb') as f:\n        for _ in range(1000):\n"
             "            f.write(b'x' * (1 << 20))")
MANY_FILES = "import os\nos.mkdir('many')\nfor k in range(20000):\n    open(f'many/{k}', 'w').close()"
# kernel state that would outlive the trial: a key, a user namespace (clone and unshare), io_uring
# add_key, keyctl, unshare, clone, io_uring_setup
NR = {"x86_64": (248, 250, 272, 56, 425), "aarch64": (217, 219, 97, 220, 425)}[platform.machine()]
KERNEL_STATE = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nout = []\n"
                "for nr, args in ((ADD_KEY, (b'user', b'covert', b'secret', 6, -4)), (KEYCTL, (0, -4, 0)),\n"
                "                 (UNSHARE, (0x10000000,)), (CLONE, (0x10000000 | 17, 0, 0, 0, 0)), (URING, (8, 0))):\n"
                "    r = libc.syscall(nr, *args)\n    out.append((nr, r, ctypes.get_errno()))\n"
                "raise RuntimeError(f'kernel calls: {out}')")
FORGE = (f"import sys\n_r = {RUNNER}\n_orig = _r.write_frame\n"
         "def _forge(fd, header, payloads=()):\n    h = dict(header)\n"
         "    if h['type'] == 'info':\n        h.update(params=1, device='cuda', amp=True)\n"
         "    if h['type'] == 'epoch':  # an epoch that really took at least 0.3 s claims 1 ms\n"
         "        __import__('time').sleep(0.3)\n"
         "        h.update(images=128000, train_time_s=0.001, epoch_time_s=0.001, train_accuracy=1.0)\n"
         "    _orig(fd, h, payloads)\n_r.write_frame = _forge\n")
# a schema-valid state of 1 GiB of zeros, streamed so the jail never holds it
HUGE_STATE = (f"import sys, os, struct, json\n_r = {RUNNER}\n_orig = _r.write_frame\n"
              "def _forge(fd, header, payloads=()):\n    if header['type'] != 'epoch':\n"
              "        return _orig(fd, header, payloads)\n    logits, n = payloads[0], 1 << 30\n"
              "    meta = json.dumps({'model/w': {'dtype': 'F32', 'shape': [n // 4], 'data_offsets': [0, n]}}).encode()\n"
              "    meta += b' ' * (-len(meta) % 8)\n"
              "    head = json.dumps({**header, 'sizes': [len(logits), 8 + len(meta) + n]}).encode()\n"
              "    os.write(fd, struct.pack('>I', len(head)) + head + logits + struct.pack('<Q', len(meta)) + meta)\n"
              "    zeros = bytes(1 << 20)\n    for _ in range(n >> 20):\n        os.write(fd, zeros)\n"
              "_r.write_frame = _forge\n")
# within the bound, but not the model's tensors: a 200 kB extra tensor in the state
PADDED_STATE = (f"import sys, torch\n_r = {RUNNER}\n_pack = _r.pack_state\n_st = sys.modules['safetensors.torch']\n"
                "def _padded(model):\n    import json\n    blob = _pack(model)\n    n = int.from_bytes(blob[:8], 'little')\n"
                "    meta = json.loads(blob[8:8 + n])['__metadata__']\n"
                "    t = {k: v for k, v in _st.load(blob).items()}\n    t['model/extra'] = torch.zeros(50000)\n"
                "    return _st.save(t, metadata=meta)\n_r.pack_state = _padded\n")
CLOSE_AND_SLEEP = "import os, ctypes\nos.closerange(3, 1024)\nctypes.CDLL(None).sleep(600)"
# the innocent model, first raising if the jail still holds a SysV segment or more than a few MB of scratch
CHECKING_INNOCENT = model(init=(
    "import os\nsegments = open('/proc/sysvipc/shm').read().splitlines()[1:]\nst = os.statvfs('/scratch')\n"
    "used = (st.f_blocks - st.f_bfree) * st.f_frsize\nif segments or used > 16 << 20:\n"
    "    raise RuntimeError(f'left behind: {len(segments)} SysV segments, {used >> 20} MB of scratch')"))


def host_memory() -> dict:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return {k: int(info[k].split()[0]) // 1024 for k in ("Shmem", "MemAvailable")}


def numbers(epoch: dict) -> tuple:
    return epoch["accuracy"], epoch["val_loss"], epoch["train_loss"]


@pytest.fixture(scope="module")
def prepared(cifar_dir, tmp_path_factory):
    return data.prepare(data.locate(cifar_dir), tmp_path_factory.mktemp("cache")).to_dict()


@pytest.fixture(scope="module")
def ex(prepared):
    if hardening().cgroups is None:
        pytest.fail(f"these tests need per-trial cgroups: {hardening().notes}")
    with LocalExecutor(1, LIMITS, data=jail_data(prepared)) as executor:
        yield executor


@pytest.fixture(scope="module")
def alone(prepared):
    with LocalExecutor(1, LIMITS, data=jail_data(prepared)) as executor:
        res = executor.submit(train_trial(INNOCENT, prepared)).result()
    assert res.status == "trained", res
    return numbers(res.epochs[0])


def run(ex, prepared, alone, what: str, code: str, timeout: float = 60, **over):
    """The hostile model, then the innocent one, which first checks from inside the same jail that nothing
    of the hostile one is left (its SysV segments, its scratch files), while the driver checks that none of
    its processes is; one line for the closing note. (Exact checks, not the host's Shmem total, which other
    tests running beside these move.)"""
    before = host_memory()
    started = time.monotonic()
    res = ex.submit(train_trial(code, prepared, timeout=timeout, **over)).result()
    took = time.monotonic() - started
    left = model_processes({cfg.uid for cfg in ex.configs})
    after_res = ex.submit(train_trial(CHECKING_INNOCENT, prepared)).result()
    after = host_memory()
    b = res.budget
    print(f"\n[{what}] {res.status}: {res.message[:160]} | peak {b.get('memory_peak_mb')} MB of "
          f"{b.get('memory_limit_mb')}, oom kills {b.get('oom_kills')}, forks refused {b.get('forks_refused')}, "
          f"scratch {b.get('scratch_bytes', 0) >> 20} MB / {b.get('scratch_files')} files, ipc removed "
          f"{b.get('ipc_removed')} | host Shmem {before['Shmem']} -> {after['Shmem']} MB, MemAvailable "
          f"{before['MemAvailable']} -> {after['MemAvailable']} MB | {took:.1f} s")
    assert left == [], f"{what}: processes of the model outlived it: {left}"
    assert after_res.status == "trained", f"{what}: {after_res.status}: {after_res.message}"
    assert numbers(after_res.epochs[0]) == alone, what
    return res, took


def test_sysv_segments_past_the_budget_end_the_trial_and_are_removed(ex, prepared, alone):
    res, _ = run(ex, prepared, alone, "SysV shm 6 x 300 MB under 1 GB", model(init=SHM_FILL.replace("COUNT", "6")))
    assert res.status == "out-of-memory" and "memory budget of 1024 MB exceeded" in res.message
    assert res.budget["oom_kills"] >= 1 and res.budget["memory_peak_mb"] <= 1024 and res.budget["ipc_removed"] >= 3


def test_sysv_segments_within_the_budget_are_gone_for_the_next_model(ex, prepared, alone):
    res, _ = run(ex, prepared, alone, "SysV shm 2 x 300 MB detached, kept", model(init=SHM_FILL.replace("COUNT", "2")))
    assert res.status == "trained" and res.budget["ipc_removed"] == 2
    spy, _ = run(ex, prepared, alone, "a later model lists/attaches segments", model(init=SHM_LIST))
    assert "segments listed: 0, attached: 0" in spy.message


def test_memfd_written_past_the_budget(ex, prepared, alone):
    res, _ = run(ex, prepared, alone, "memfd write() 1800 MB", model(init=MEMFD))
    assert res.status == "out-of-memory" and res.budget["memory_peak_mb"] <= 1024


def test_forked_children_share_one_budget(ex, prepared, alone):
    res, _ = run(ex, prepared, alone, "5 forked children x 350 MB", model(init=CHILDREN))
    assert res.status == "out-of-memory" and res.budget["oom_kills"] >= 1 and res.budget["memory_peak_mb"] <= 1024
    if res.budget["pids_limit"] is not None:  # a pids controller counts them too (else RLIMIT_NPROC alone)
        assert res.budget["pids_peak"] <= LIMITS.nproc


def test_big_files_fill_only_the_sized_scratch(ex, prepared, alone):
    res, _ = run(ex, prepared, alone, "3 x 1000 MB files", model(init=BIG_FILES))
    assert res.status == "disk-full" and "scratch of 512 MB full" in res.message


def test_twenty_thousand_files_are_over_the_file_budget(ex, prepared, alone):
    res, _ = run(ex, prepared, alone, "20,000 files", model(init=MANY_FILES))
    assert res.status == "limit" and "file budget of 10000 exceeded" in res.message
    assert res.budget["scratch_files"] > 20000


def test_keys_namespaces_and_io_uring_are_refused(ex, prepared, alone):
    code = KERNEL_STATE
    for name, nr in zip(("ADD_KEY", "KEYCTL", "UNSHARE", "CLONE", "URING"), NR):
        code = code.replace(name, str(nr))
    res, _ = run(ex, prepared, alone, "add_key, keyctl, unshare/clone(NEWUSER), io_uring", model(init=code))
    calls = res.message.split("kernel calls: ", 1)[1]
    assert calls == repr([(nr, -1, 1) for nr in NR]), calls  # every one: EPERM


def test_forged_runner_messages_do_not_reach_the_trusted_fields(ex, prepared, alone):
    trial = train_trial(model(top=FORGE), prepared)
    trial.train_images = 256  # what the driver configured (train_limit)
    started = time.monotonic()
    res = ex.submit(trial).result()
    took = time.monotonic() - started
    print(f"\n[forged params/device/amp/duration/images/train accuracy] {res.status}: recorded "
          f"{json.dumps({k: res.epochs[0][k] for k in ('duration_ns', 'wall_s', 'samples_per_second')})}")
    assert res.status == "trained"
    e = res.epochs[0]
    assert e["duration_ns"] >= 0.3e9 and e["wall_s"] <= took  # the driver's clock, not the claimed 1 ms
    assert abs(e["samples_per_second"] - 256 / e["wall_s"]) < 0.01 * e["samples_per_second"]
    conf = train_trial(INNOCENT, prepared).config
    seed = seed_result("Forger", 0, conf, res, 0, trusted=None)
    assert seed["device"] == "cpu" and seed["amp"] is False and seed["params"] is None
    assert seed["self_reported"]["params"] == 1
    trial = stat_trials("Forger", {**conf, "epochs": 1}, [seed])[1][0]
    assert trial["duration"] == e["duration_ns"] and trial["train_stat"]["train_accuracy"] is None
    assert trial["train_stat"]["samples_per_second"] == e["samples_per_second"] < 128000
    claims = trial[EXTRA]["self_reported"]
    assert claims["train_accuracy"] == 1.0 and claims["images_per_s"] > 1e7 and trial[EXTRA]["device"] == "cpu"


def test_a_one_gib_state_is_refused_from_its_header(ex, prepared, alone, tmp_path):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trial = train_trial(model(top=HUGE_STATE), prepared, save_best=True)
    trial.state_dir = str(tmp_path)
    res = ex.submit(trial).result()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) // 1024
    print(f"\n[1 GiB schema-valid state, 162 params] {res.status}: {res.message[:160]} | driver max RSS +{grown} MB")
    assert res.status == "error" and "over the" in res.message and grown < 100
    assert not (tmp_path / STATE).exists() and not (tmp_path / BEST).exists()
    run(ex, prepared, alone, "(innocent after the 1 GiB state)", INNOCENT)


def test_a_state_with_foreign_tensors_is_not_kept(ex, prepared, alone, tmp_path):
    trial = train_trial(model(top=PADDED_STATE), prepared, save_best=True)
    trial.state_dir = str(tmp_path)
    res = ex.submit(trial).result()
    print(f"\n[state with a 200 kB extra tensor] {res.status}: {res.message[:160]}")
    assert res.status == "error" and "the model declared" in res.message
    assert not (tmp_path / STATE).exists() and not (tmp_path / BEST).exists()


def test_closing_the_channel_and_sleeping_in_c_is_a_timeout(ex, prepared, alone):
    assert ex.submit(train_trial(INNOCENT, prepared)).result().status == "trained"  # a started jail: time the model only
    res, took = run(ex, prepared, alone, "close the channel, sleep in C", model(init=CLOSE_AND_SLEEP), timeout=4)
    assert res.status == "timed-out" and "closed its channel" in res.message
    assert took < 4 + EXIT_GRACE + 3


def test_a_host_without_delegated_cgroup_v2_says_why():
    """This host's v2 mount has no memory controller: the v2 path refuses with the reason."""
    try:
        groups = Cgroups.detect_v2()
    except CgroupUnavailable as e:
        assert "no memory controller" in str(e) or "no cgroup v1 memory hierarchy" in str(e)
    else:  # a delegated v2 group: a budget can be made and removed
        b = groups.budget("probe-test", 64 << 20, 8)
        b.close()
        assert not any(d.exists() for d in b.dirs.values())


def test_an_innocent_state_is_streamed_to_disk_and_kept(ex, prepared, tmp_path):
    from safetensors.numpy import load_file

    trial = train_trial(INNOCENT, prepared, save_best=True, epochs=2)
    trial.state_dir = str(tmp_path)
    res = ex.submit(trial).result()
    assert res.status == "trained" and len(res.epochs) == 2
    kept = load_file(tmp_path / STATE)
    assert kept["model/conv.weight"].shape == (8, 3, 3, 3) and (tmp_path / BEST).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, "history.json", STATE]  # nothing half-written
