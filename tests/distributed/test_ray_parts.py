"""The parts of the Ray executor that need no cluster: the order of a sweep, the relay of frames on a node,
the node-local dataset cache (with a real local Ray object store), and the NNEval options."""
from __future__ import annotations

import queue
from pathlib import Path

import pytest

from ab.gpt.brute.fract.sweep.evaluate import ModelEntry
from ab.gpt.brute.fract.sweep.order import longest_first
from ab.gpt.brute.fract.trial import ray_node
from ab.gpt.brute.fract.trial.jail import bwrap_command
from ab.gpt.brute.fract.trial.protocol import ProtocolError
from tests.eval.evalkit import run_cli


def test_longest_first_by_manifest_flops_then_file_order():
    entries = [ModelEntry("a", Path("a.py"), flops=10), ModelEntry("b", Path("b.py")),
               ModelEntry("c", Path("c.py"), flops=300), ModelEntry("d", Path("d.py"), flops=10),
               ModelEntry("e", Path("e.py"))]
    assert [e.name for e in longest_first(entries)] == ["c", "a", "d", "b", "e"]


def test_relay_thins_progress_and_keeps_every_other_frame_in_order(monkeypatch):
    out: queue.Queue = queue.Queue()
    relay = ray_node._Relay(out)
    for k in range(50):  # one batch event after another, far faster than PROGRESS_EVERY
        relay.take({"type": "progress", "batch": k}, [])
    relay.take({"type": "epoch", "epoch": 1}, [b"logits", b"state"])
    relay.finish({"code": 0}, "tail")
    items = []
    while not out.empty():
        items.append(out.get())
    progress = [i[1]["batch"] for i in items if i[0] == "frame" and i[1]["type"] == "progress"]
    assert progress[0] == 0 and progress[-1] == 49 and len(progress) <= 3  # the first, the last before the epoch
    kinds = [i[1]["type"] if i[0] == "frame" else i[0] for i in items]
    assert kinds[-2:] == ["epoch", "exit"] and items[-1] == ("exit", {"code": 0}, "tail")
    assert items[-2][2] == [b"logits", b"state"]


def test_a_node_jail_gets_the_trial_scratch_budget():
    """A node's jail sizes its scratch tmpfs by the trial's disk budget, as a local jail does; a different
    budget gets a jail of its own."""
    small = ray_node._JailHost.get({}, 1, False, 96)
    assert small.cfg.scratch_mb == 96 and ray_node._JailHost.get({}, 1, False, 96) is small
    assert ray_node._JailHost.get({}, 1, False, 512).cfg.scratch_mb == 512
    cmd = bwrap_command(small.cfg)
    assert cmd[cmd.index("--size") + 1:cmd.index("--size") + 3] == [str(96 << 20), "--tmpfs"]


def test_relay_refuses_a_flood_of_frames(monkeypatch):
    relay = ray_node._Relay(queue.Queue(), max_other=4)
    for k in range(100):  # progress is thinned, not counted against the others
        relay.take({"type": "progress", "batch": k}, [])
    for _ in range(4):
        relay.take({"type": "info"}, [])
    with pytest.raises(ProtocolError, match="too many"):
        relay.take({"type": "info"}, [])
    monkeypatch.setattr(ray_node.protocol, "Limits", lambda: type("L", (), {"max_frames": 5})())
    flood = ray_node._Relay(queue.Queue())
    for k in range(5):  # all frames, progress included, are bounded by the protocol's limit
        flood.take({"type": "progress", "batch": k}, [])
    with pytest.raises(ProtocolError, match="too many"):
        flood.take({"type": "progress", "batch": 5}, [])


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    import os
    import shutil

    import ray

    temp = f"/tmp/rp{os.getpid()}"  # short: Ray's socket paths must fit
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             object_store_memory=80 << 20, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def test_node_cache_materialises_once_and_checks_the_content_hash(local_ray, tmp_path, monkeypatch):
    monkeypatch.setenv(ray_node.CACHE_ENV, str(tmp_path / "cache"))
    blobs = {"train_x": b"x" * 1000, "test_x": b"y" * 10}
    names = {"train_x": "train_x.npy", "test_x": "test_x.npy"}
    digest = ray_node.digest_of(blobs)
    paths, cached = ray_node.node_data(digest, names, [local_ray.put(blobs)])
    assert not cached and {k: Path(v).read_bytes() for k, v in paths.items()} == blobs
    assert all(Path(v).stat().st_mode & 0o777 == 0o444 for v in paths.values())
    again, cached = ray_node.node_data(digest, names, [None])  # cached: the object store is not asked
    assert cached and again == paths

    forged = {"train_x": b"z" * 1000, "test_x": b"y" * 10}
    other = ray_node.digest_of({"train_x": b"w", "test_x": b""})
    with pytest.raises(ValueError, match="content hash"):
        ray_node.node_data(other, names, [local_ray.put(forged)])
    assert not (tmp_path / "cache" / other / ".complete").exists()


def test_ray_options_need_the_ray_executor(tmp_path):
    for opt, value in (("--gpus-per-trial", "0.25"), ("--cpus-per-trial", "2"), ("--memory-per-trial-gb", "4")):
        proc = run_cli("ab.gpt.NNEval", "--models", str(tmp_path), opt, value, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and f"{opt} needs --executor ray" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_a_gpu_trial_runs_on_the_gpu_ray_assigned():
    from ab.gpt.brute.fract.trial import Trial

    t = Trial("train", "code", {"device": "cuda", "epochs": 1}, 10)
    assert ray_node.on_assigned_gpu(t, [2]).config["device"] == "cuda:2"
    assert ray_node.on_assigned_gpu(t, ["1"]).config["device"] == "cuda:1"
    assert ray_node.on_assigned_gpu(t, []).config["device"] == "cuda"
    assert t.config["device"] == "cuda"  # the driver's trial is not changed
    cpu = Trial("train", "code", {"device": "cpu"}, 10)
    assert ray_node.on_assigned_gpu(cpu, [0]).config["device"] == "cpu"
