"""A real multi-node Ray cluster on one machine, for the tests and bench/bench_distributed.py.

The head has no CPUs (no trial runs there); each worker node is a `ray start --block` in its own mount
namespace (`unshare -m --propagation private`, needs root) in which the given folders (the LEMUR root's
out/, new_lemur/, db/, the data folder) are covered by an empty tmpfs, with its own node-local cache
and temp folder. Every node is its own process group, so `kill_node` (SIGKILL to the group) is a node
lost; `stop` kills them all. Ports are derived from this process's id, and the Ray temp folder is
private, so parallel runs do not collide. Nodes are started a few seconds apart (two started at the same
moment time out).
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def node_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({"PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                # a lost node is noticed in a few seconds, not the default ~30
                "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                "RAY_health_check_initial_delay_ms": "1000"})
    env.update(extra or {})
    return env


class LocalCluster:
    def __init__(self, base: Path, hide: list[Path], port: int | None = None) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.hide = [Path(h) for h in hide]
        self.port = port or 21000 + (os.getpid() % 400) * 20
        # a short private temp dir: Ray's socket paths must stay under 107 characters
        self.temp = Path(f"/tmp/r{os.getpid()}_{self.port}")
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}

    def _ray_start(self, name: str, args: list[str], hide: bool, extra_env: dict | None = None) -> subprocess.Popen:
        node_dir = self.base / name
        (node_dir / "tmp").mkdir(parents=True, exist_ok=True)
        (node_dir / "cache").mkdir(parents=True, exist_ok=True)
        log = open(node_dir / "ray-start.log", "w")
        cmd = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp}",
               "--object-store-memory=150000000", "--disable-usage-stats", *args]
        env = node_env({"TMPDIR": str(node_dir / "tmp"), "NN_GPT_FRACTAL_NODE_CACHE": str(node_dir / "cache"),
                        **(extra_env or {})})
        if hide:
            mounts = "".join(f"mount -t tmpfs -o size=1m,mode=0755 none {shlex.quote(str(h))} && "
                             for h in self.hide)
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   mounts + "exec " + " ".join(map(shlex.quote, cmd))]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, cwd=str(node_dir))
        self.nodes[name] = proc
        return proc

    def start(self, workers: int = 2, cpus: int = 1, settle: float = 4.0) -> "LocalCluster":
        for h in self.hide:
            h.mkdir(parents=True, exist_ok=True)
        p = self.port
        self._ray_start("head", ["--head", f"--port={p}", "--num-cpus=0", "--include-dashboard=false",
                                 f"--ray-client-server-port={p + 1}", f"--dashboard-agent-listen-port={p + 2}",
                                 f"--node-manager-port={p + 3}", f"--object-manager-port={p + 4}"], hide=False)
        self.wait_started("head")
        for k in range(workers):
            time.sleep(settle)
            self.add_worker(f"worker{k + 1}", cpus)
        return self

    def add_worker(self, name: str, cpus: int = 1) -> None:
        p = self.port + 5 + 3 * len([n for n in self.nodes if n != "head"])
        self._ray_start(name, [f"--address={self.address}", f"--num-cpus={cpus}",
                               f"--dashboard-agent-listen-port={p}", f"--node-manager-port={p + 1}",
                               f"--object-manager-port={p + 2}"], hide=True)
        self.wait_started(name)

    def alive_nodes(self) -> int:
        """Alive nodes as the GCS sees them (asked from a short-lived client process)."""
        code = ("import ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR'); "
                "print(sum(n['Alive'] for n in ray.nodes()))" % self.address)
        proc = subprocess.run([sys.executable, "-c", code], env=node_env(), capture_output=True, text=True,
                              timeout=120)
        try:
            return int(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    def wait_started(self, name: str, timeout: float = 120) -> None:
        """Until the node's `ray start` says it runs (it has then registered with the head)."""
        end = time.monotonic() + timeout
        while "Ray runtime started" not in self.log(name):
            if self.nodes[name].poll() is not None:
                raise RuntimeError(f"ray node {name} exited: {self.log(name)[-2000:]}")
            if time.monotonic() > end:
                raise TimeoutError(f"ray node {name} did not start in {timeout:g} s: {self.log(name)[-2000:]}")
            time.sleep(0.2)

    def wait_nodes(self, n: int, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, proc in self.nodes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"ray node {name} exited: {self.log(name)[-2000:]}")
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        raise TimeoutError(f"the Ray cluster did not reach {n} nodes in {timeout:g} s")

    def log(self, name: str) -> str:
        try:
            return (self.base / name / "ray-start.log").read_text(errors="replace")
        except OSError:
            return ""

    def pids(self, name: str) -> set[int]:
        """Every process of a node: `ray start`, its process group and all their descendants (Ray workers
        start their own sessions; jails too)."""
        leader = self.nodes[name].pid
        parent: dict[int, int] = {}
        group: set[int] = set()
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parent[int(d.name)] = int(fields[1])
                if int(fields[2]) == leader:
                    group.add(int(d.name))
        out = {leader} | group
        grew = True
        while grew:
            more = {pid for pid, pp in parent.items() if pp in out and pid not in out}
            out |= more
            grew = bool(more)
        return {pid for pid in out if pid in parent}

    def node_of(self, pid: int) -> str | None:
        """The node whose process tree holds `pid` (a Ray worker)."""
        while pid > 1:
            for name, proc in self.nodes.items():
                if pid == proc.pid:
                    return name
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        return None

    def kill_node(self, name: str) -> None:
        proc = self.nodes[name]
        for pid in self.pids(name):  # each process by PID, then what is left of the group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop(self) -> None:
        for name in reversed(list(self.nodes)):
            self.kill_node(name)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
