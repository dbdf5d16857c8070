"""Helpers of the trial tests: a tiny innocent model, hostile variants of it, and ways to run them."""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from ab.gpt.brute.fract.trial import data
from ab.gpt.brute.fract.trial import Trial
from ab.gpt.brute.fract.trial.jail import UID_BASE
from ab.gpt.brute.fract.trial.protocol import config_hash

MODEL = '''import torch
import torch.nn as nn
#TOP


def supported_hyperparameters():
    return {'lr', 'momentum'}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.head = nn.Linear(8, out_shape[0])
        #INIT

    def forward(self, x):
        #FORWARD
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    def train_setup(self, prm):
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm['lr'], momentum=prm['momentum'])

    def learn(self, train_data):
        #LEARN
        for x, y in train_data:
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(x), y)
            loss.backward()
            self.optimizer.step()
        return 0.5, float(loss)
'''


def model(top: str = "", init: str = "", forward: str = "", learn: str = "") -> str:
    def ind(code: str, n: int) -> str:
        return code.replace("\n", "\n" + " " * n)

    return (MODEL.replace("#TOP", top).replace("#INIT", ind(init, 8)).replace("#FORWARD", ind(forward, 8))
            .replace("#LEARN", ind(learn, 8)))


INNOCENT = model()


def train_config(**over) -> dict:
    conf = {"epochs": 1, "batch": 16, "lr": 0.01, "momentum": 0.9, "dropout": 0.0, "transform": "norm_flip",
            "seed": 0, "amp": False, "checkpointing": False, "channels_last": False, "device": "cpu", "threads": 1,
            "train_limit": 256, "test_limit": 64, "eval_batch": 256,
            "norm": [list(v) for v in data.lemur_norm()], **over}
    conf["config_hash"] = config_hash(conf)
    return conf


def train_trial(code: str, prepared: dict, timeout: float = 60, **over) -> Trial:
    return Trial("train", code, train_config(**over), timeout, labels=prepared["test_y"])


def driver_uids(pid: int, slots: int = 16) -> set[int]:
    """The model uids of the jails of the driver process `pid` (see jail.model_uid)."""
    return {UID_BASE + (pid % 1500) * 16 + k for k in range(slots)}


def jail_data(prepared: dict) -> dict:
    return {k: prepared[k] for k in ("train_x", "train_y", "test_x")}


def model_processes(uids=None) -> list[int]:
    """Host pids of live processes running as one of `uids` (default: any model uid of any driver)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        uid = int(fields["Uid"].split()[0])
        mine = uid in uids if uids is not None else UID_BASE <= uid < UID_BASE + 1500 * 16
        if mine and not fields["State"].strip().startswith("Z"):
            found.append(int(name))
    return found


class Listener:
    """A loopback TCP listener that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()


def canaries(root: Path) -> dict[Path, str]:
    """Canary files where a LEMUR root keeps its results, DB and other trials' work."""
    files = {}
    for rel in ("new_lemur/runs/Other.json", "db/ab.nn.db", "new_lemur/.work/Other/seed0/history.json",
                "out/cache/secret.txt"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"canary {rel}")
        files[p] = p.read_text()
    return files
