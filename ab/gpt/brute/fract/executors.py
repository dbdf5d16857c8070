"""Where trials run. Every executor trains through a sandbox worker process (generated code is untrusted).

- `LocalExecutor(workers=N)`: N sandbox workers on this machine (N=1 is the default "in-process" mode:
  one model at a time, in one worker subprocess that lives for the whole sweep).
- `RayExecutor`: one Ray task per trial (num_gpus=1 when the driver sees CUDA, else num_cpus=1); inside
  the task a one-worker Sandbox runs the training, so the same limits apply. Connects to `address` or
  starts a local Ray on demand.

Both run `func` ("module:function" inside ab.gpt; the training runner by default) as
`func(path=..., config=...)`. `submit(path, config, timeout)` returns a concurrent Future whose result
is {"ok": True, "result": ...} or {"ok": False, "error": message}; the sweep turns errors into
statuses (`classify`).
"""
from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path

from .sandbox import Limits, Sandbox, SandboxError

TRAIN = "ab.gpt.brute.fract.NNAlterFractalNet:train_model_file"


def classify(error: str) -> str:
    """Status of a trial whose sandbox call failed."""
    text = error.lower()
    if text.startswith("timed out"):
        return "timed-out"
    if "out of memory" in text or "can't allocate memory" in text or "sigkill" in text:
        return "out-of-memory"
    return "error"


def _wrap(fut: Future) -> Future:
    out: Future = Future()

    def done(f: Future) -> None:
        try:
            out.set_result({"ok": True, "result": f.result()})
        except SandboxError as e:
            out.set_result({"ok": False, "error": str(e)})
        except Exception as e:  # noqa: BLE001
            out.set_result({"ok": False, "error": f"{type(e).__name__}: {e}"})

    fut.add_done_callback(done)
    return out


class LocalExecutor:
    def __init__(self, workers: int, limits: Limits, run_dir: Path, func: str = TRAIN) -> None:
        self.workers, self.func = workers, func
        self.box = Sandbox(workers=workers, limits=limits, run_dir=run_dir)

    def submit(self, path: str, config: dict, timeout: float) -> Future:
        return _wrap(self.box.submit(self.func, timeout=timeout, path=path, config=config))

    def close(self) -> None:
        self.box.close()

    def abort(self) -> None:
        """Interrupted sweep: do not wait for running trials (their workers stop when the driver exits)."""


def ray_job(func: str, path: str, config: dict, timeout: float, limits: dict, run_dir: str) -> dict:
    """Body of one Ray task: a one-worker sandbox runs `func` (e.g. trains the trial)."""
    with Sandbox(workers=1, limits=Limits(**limits), run_dir=Path(run_dir)) as box:
        try:
            return {"ok": True, "result": box.call(func, timeout=timeout, path=path, config=config)}
        except SandboxError as e:
            return {"ok": False, "error": str(e)}


class RayExecutor:
    def __init__(self, limits: Limits, run_dir: Path, address: str | None = None, gpus: bool = False,
                 num_cpus: int | None = None, func: str = TRAIN) -> None:
        import ray

        from .sandbox import _repo_paths

        self.ray = ray
        self.limits, self.run_dir, self.func = limits, run_dir, func
        self.started_here = not ray.is_initialized()
        if self.started_here:
            env = {"env_vars": {"PYTHONPATH": _repo_paths()}}
            if address:
                ray.init(address=address, runtime_env=env, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, runtime_env=env,
                         object_store_memory=100 * 2**20, log_to_driver=False)
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        self.task = ray.remote(**resources, max_retries=0)(ray_job)
        self.workers = int(ray.cluster_resources().get("GPU" if gpus else "CPU", 1))

    def submit(self, path: str, config: dict, timeout: float) -> Future:
        ref = self.task.remote(self.func, path, config, timeout, self.limits.__dict__, str(self.run_dir))
        out: Future = Future()

        def done(f: Future) -> None:
            try:
                out.set_result(f.result())
            except Exception as e:  # noqa: BLE001 - a lost task or worker is an error result
                out.set_result({"ok": False, "error": f"ray: {type(e).__name__}: {str(e).splitlines()[0][:300]}"})

        ref.future().add_done_callback(done)
        return out

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()

    abort = close
