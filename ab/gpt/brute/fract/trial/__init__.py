"""Hermetic trials: every execution of model code happens here, in a bubblewrap jail.

- jail.py: the bwrap command line and the check that a jail can start;
- protocol.py: framed, size-limited, strictly checked messages (JSON header + raw payloads);
- worker.py: the zygote inside the jail, one fresh fork per model;
- runner.py: the training loop inside the jail (test images only; logits and state out);
- data.py: CIFAR-10 for a trial: located and decoded once by the driver, memory-mapped in the jail;
- batches.py: inside the jail, a split held on the device and served as normalised batches;
- model_file.py: how a trial imports a model file;
- session.py: the driver's side of one jail: runs a trial, scores its logits, keeps its state;
- executors.py: N local jails, or one Ray task per trial;
- ray_executor.py / ray_node.py: the driver's and the node's side of a Ray trial (no shared storage).

The interface is independent of where the process runs: a `Trial` (task, code text, config, data
handle, optional resume state) goes in; progress / epoch / final events and a `TrialResult` come out.
"""
from .jail import JailConfig, JailError  # noqa: F401
from .session import Trial, TrialLimits, TrialResult  # noqa: F401
