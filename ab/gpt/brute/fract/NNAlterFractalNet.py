"""The training runner (the paper's `NNAlterFractalNet`): train one model file for one seed on CIFAR-10.

The runner itself lives in `trial/runner.py` and only ever runs inside a bubblewrap jail (see
`trial/`): the jail gets the training images and labels and the test images; after every epoch it
sends the test logits, its self-reported training figures and the trial state back, and the driver
computes test accuracy and loss. This module keeps the paper's entry name for the same functions.
"""
from .trial.protocol import RESULT_KEYS, config_hash  # noqa: F401
from .trial.runner import (CPU_AMP_MIN_CHANNELS, DEFAULTS, auto_amp, build,  # noqa: F401
                           derive_seed, finite, gradient_norm, resolve_device, seed_all, train)
