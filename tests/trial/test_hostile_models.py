"""Hostile model files, run with the static check OFF: each is contained by the jail and recorded with a
clear cause, and an innocent model trained right before and right after it gets exactly the accuracy
and losses it gets when trained alone (same seed, fresh executor).

Tokens in the hostile code: ROOT (a LEMUR root holding canary files in new_lemur/, db/, out/ and another
trial's work folder), PORT (a loopback listener of this test), OUTSIDE (a canary file beside the repo),
SRC (the package source folder, visible read-only in the jail).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ab
from ab.gpt.brute.fract.trial import data
from ab.gpt.brute.fract.generation import codecheck
from ab.gpt.brute.fract.trial import TrialLimits
from ab.gpt.brute.fract.trial.executors import LocalExecutor

from .kit import INNOCENT, Listener, canaries, driver_uids, jail_data, model, model_processes, train_trial

SECRET = "S3CRET-fractal-test-token"
REPO = Path(__file__).resolve().parents[2]

CHILD_LOOP = ("import time, socket\\nfor _ in range(600):\\n    try:\\n        socket.create_connection(('127.0.0.1', "
              "PORT), timeout=0.2).send(b'x')\\n    except OSError:\\n        pass\\n    try:\\n        "
              "open('ROOT/db/ab.nn.db', 'a').write('x')\\n    except OSError:\\n        pass\\n    time.sleep(0.05)")

# name -> (code, status, text the recorded message must contain; None: trained normally)
HOSTILE = {
    "subprocess writes a canary": (model(init="import subprocess\nsubprocess.run(['sh', '-c', 'echo x > ROOT/db/ab.nn.db'], "
                                         "check=True)"), "error", "CalledProcessError"),
    "C-level fork/exec via sys.modules['posix']": (model(init=(
        "import sys\np = sys.modules['posix']\npid = p.fork()\nif pid == 0:\n"
        "    p.execv('/bin/sh', ['sh', '-c', 'echo x > ROOT/new_lemur/runs/Other.json'])\n"
        "_, st = p.waitpid(pid, 0)\nraise RuntimeError(f'posix child exit status {st}')")),
        "error", "posix child exit status 512"),
    "detached children outlive the model and connect out": (model(init=(
        "import subprocess, sys\nfor _ in range(3):\n"
        f"    subprocess.Popen([sys.executable, '-c', \"{CHILD_LOOP}\"], start_new_session=True,\n"
        "                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)")),
        "trained", None),
    "write through dir_fd": (model(init=(
        "import os\nfd = os.open('ROOT/new_lemur', os.O_RDONLY)\n"
        "os.open('runs/Other.json', os.O_WRONLY | os.O_TRUNC, dir_fd=fd)")), "error", "FileNotFoundError"),
    "write into the read-only source tree through dir_fd": (model(init=(
        "import os\nfd = os.open('SRC', os.O_RDONLY)\nos.open('planted.py', os.O_WRONLY | os.O_CREAT, dir_fd=fd)")),
        "error", "Error: [Errno"),
    "symlink out of the scratch": (model(init=(
        "import os\nos.symlink('ROOT/db/ab.nn.db', 'db')\nopen('db', 'w').write('gone')")), "error", "FileNotFoundError"),
    "/proc/self/fd and /proc/1/root": (model(init=(
        "import os\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n        os.readlink('/proc/self/fd/' + fd)\n"
        "    except OSError:\n        pass\nopen('/proc/1/root/ROOT/db/ab.nn.db', 'w').write('gone')")),
        "error", "PermissionError"),
    "hard link to the training data": (model(init=(
        "import os\nos.link('/data/train_x.npy', 'x.npy')")), "error", "Error: [Errno"),
    "tamper with the training data": (model(init="open('/data/train_y.npy', 'r+b').write(b'0' * 64)"),
                                      "error", "Error: [Errno"),
    "environment secrets": (model(init=(
        "import os\nloot = [os.environ.get('FRACTAL_FAKE_SECRET', '')]\n"
        "for p in os.listdir('/proc'):\n    if p.isdigit():\n        try:\n"
        "            loot.append(open(f'/proc/{p}/environ', 'rb').read().decode(errors='replace'))\n"
        "        except OSError:\n            pass\n"
        f"raise RuntimeError('loot: ' + repr([s for s in loot if '{SECRET}' in s]))")), "error", "loot: []"),
    "files outside (repo, home)": (model(init="open('OUTSIDE').read()"), "error", "FileNotFoundError"),
    "network to a loopback listener": (model(init="import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=2)"),
                                       "error", "ConnectionRefusedError"),
    "tensor subclass with always-true == and argmax": (model(top=(
        "class Liar(torch.Tensor):\n    def __eq__(self, other):\n        return torch.ones_like(torch.Tensor(self), dtype=torch.bool)\n"
        "    def argmax(self, *a, **k):\n        return torch.zeros(self.shape[0], dtype=torch.long)\n"
        "    def eq(self, other):\n        return self == other\n"),
        forward="return Liar(self.head(torch.relu(self.conv(x)).mean(dim=(2, 3))))"), "trained", None),
    "forged protocol messages on inherited fds and the zygote's": (model(learn=(
        "import os, json, struct\nfor p in ('1', '2'):\n    try:\n        os.listdir(f'/proc/{p}/fd')\n"
        "        raise RuntimeError('zygote fds visible')\n    except PermissionError:\n        pass\n"
        "head = json.dumps({'type': 'result', 'value': {'accuracy': 1.0}, 'sizes': []}).encode()\n"
        "for fd in range(3, 64):\n    try:\n        os.write(fd, struct.pack('>I', len(head)) + head)\n"
        "    except OSError:\n        pass")), "error", "protocol error"),
    "global state poisoning": (model(top=(
        "torch.set_grad_enabled(False)\ntorch.set_default_dtype(torch.float64)\n"
        "nn.Conv2d.forward = lambda self, x: torch.zeros(x.shape[0], self.out_channels, x.shape[2], x.shape[3])\n"
        "torch.manual_seed(12345)\n")), None, None),
    "tampering with other trials": (model(init="import os\nos.listdir('/scratch')"), "error", "PermissionError"),
    "fork bomb": (model(init=(
        "import os, time\nkids = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            while True:\n                try:\n                    os.fork()\n                except OSError:\n"
        "                    time.sleep(30)\n        kids += 1\nexcept OSError as e:\n"
        "    raise RuntimeError(f'fork bomb stopped after {kids} children: {e}')")),
        "error", "fork bomb stopped"),
}


def fill(code: str, root: Path, port: int, outside: Path) -> str:
    src = str(Path(ab.__path__[0]))
    return code.replace("ROOT", str(root)).replace("PORT", str(port)).replace("OUTSIDE", str(outside)).replace(
        "SRC", src)


@pytest.fixture(scope="module")
def prepared(cifar_dir, tmp_path_factory):
    return data.prepare(data.locate(cifar_dir), tmp_path_factory.mktemp("cache")).to_dict()


@pytest.fixture(scope="module")
def alone(prepared):
    """The innocent model trained alone, in an executor of its own."""
    with LocalExecutor(1, TrialLimits(), data=jail_data(prepared)) as ex:
        res = ex.submit(train_trial(INNOCENT, prepared)).result()
    assert res.status == "trained", res
    return res.epochs[0]


@pytest.fixture(scope="module")
def env(prepared, tmp_path_factory):
    os.environ["FRACTAL_FAKE_SECRET"] = SECRET  # in the driver's environment while its jails start
    root = tmp_path_factory.mktemp("lemur")
    outside = REPO / f".canary-{os.getpid()}"
    outside.write_text(SECRET)
    listener = Listener()
    files = canaries(root)
    ex = LocalExecutor(1, TrialLimits(cpu_s=120, memory_gb=4, nproc=64), data=jail_data(prepared))
    yield ex, root, listener, outside, files
    ex.close()
    listener.close()
    outside.unlink()
    os.environ.pop("FRACTAL_FAKE_SECRET")


def numbers(epoch: dict) -> tuple:
    return epoch["accuracy"], epoch["val_loss"], epoch["train_loss"]


def test_the_hostile_files_pass_the_static_check_or_not_it_does_not_matter():
    """The suite runs with the static check off: several of these would not even reach the jail with it on."""
    flagged = [n for n, (code, _, _) in HOSTILE.items() if codecheck.check_source(code)]
    assert flagged, "the static check should catch some of them (it stays the first filter)"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_model_is_contained(name, env, prepared, alone):
    ex, root, listener, outside, files = env
    code, status, text = HOSTILE[name]
    before = ex.submit(train_trial(INNOCENT, prepared)).result()
    res = ex.submit(train_trial(fill(code, root, listener.port, outside), prepared, timeout=90)).result()
    after = ex.submit(train_trial(INNOCENT, prepared)).result()

    if status is not None:
        assert res.status == status, (name, res)
    if text is not None:
        assert text in res.message, (name, res.message)
    assert SECRET not in res.message and SECRET not in repr(res.epochs)
    if name.startswith("tensor subclass"):  # the driver scored the real logits, not the model's claims
        assert res.epochs[0]["accuracy"] < 0.5
    for rec in (before, after):
        assert rec.status == "trained" and numbers(rec.epochs[0]) == numbers(alone), name
    assert {p: p.read_text() for p in files} == files, "a canary changed"
    assert not list(Path(ab.__path__[0]).glob("planted*"))
    assert listener.connections == 0
    mine = {c.uid for c in ex.configs}
    assert model_processes(mine) == [], "a model process outlived its trial"


def test_a_model_knows_only_its_own_user(env, prepared):
    """getpwuid works for the model's own uid (libraries ask at import time), and the jail's user list holds
    the zygote's and the model's uids alone, never the host's."""
    ex = env[0]
    probe = model(init="import os, pwd\nraise RuntimeError('users: ' + ' '.join(f'{u.pw_name}={u.pw_uid}' "
                       "for u in pwd.getpwall()) + ' me: ' + pwd.getpwuid(os.getuid()).pw_name)")
    res = ex.submit(train_trial(probe, prepared)).result()
    users = res.message.split("users: ", 1)[1]
    assert users == f"{'root' if os.getuid() == 0 else 'driver'}={os.getuid()} model={ex.configs[0].uid} me: model"


def test_kill_9_of_the_driver_leaves_no_jailed_process(prepared, tmp_path):
    """A driver runs a model that spawns detached children; kill -9 of the driver ends all of them."""
    code = model(init=(
        "import subprocess, sys, time\nfor _ in range(2):\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        "time.sleep(600)"))
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        sys.path.insert(0, {str(Path(__file__).parent.parent.parent)!r})
        from tests.trial.kit import jail_data, train_trial
        from ab.gpt.brute.fract.trial import TrialLimits
        from ab.gpt.brute.fract.trial.executors import LocalExecutor
        prepared = json.loads({json.dumps(prepared)!r})
        ex = LocalExecutor(1, TrialLimits(), scratch={str(tmp_path / "jails")!r}, data=jail_data(prepared))
        ex.submit(train_trial({code!r}, prepared, timeout=600)).result()
    """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO)
    uids = driver_uids(proc.pid)
    deadline = time.monotonic() + 120
    while len(model_processes(uids)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert len(model_processes(uids)) >= 3, "the model and its children never started"
    assert _bwraps(uids), "the jail's bwrap is not found by its model uid"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while (model_processes(uids) or _bwraps(uids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model_processes(uids) == [] and _bwraps(uids) == []


def _bwraps(uids: set[int]) -> list[int]:
    """Processes whose command line is a jail of these model uids (the worker's --uid argument)."""
    marks = [f"--uid\0{u}\0".encode() for u in uids]
    found = []
    for name in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if any(m in cmd for m in marks):
            found.append(int(name))
    return found
