"""Fixed policy thresholds, shared by the tuner, the trial runner and the template (no torch import here, so
rendering a model file stays light)."""

DEFAULT_SHARE = 0.5  # checkpoint when one step's activations would take more than this share of free memory
# what a generated model file assumes for the host's free memory on CPU (its allowlist bars reading it)
CPU_MEMORY_GB = 8
# the static AMP rule (a model file's own, and the runner's without a probe): bf16 on CPU once every conv has
# this many channels (measured on this project's 2-core CPU, bf16 autocast vs fp32, batch 16, fractal nets:
# 17% slower with 8 channels, 1.35-1.7x faster from 16 up)
CPU_AMP_MIN_CHANNELS = 16


def decide(activation_bytes: int, free: int, share: float = DEFAULT_SHARE) -> tuple[bool, str]:
    """The rule alone: on when one step's activations exceed `share` of the free memory (the model file's
    `auto_policies` applies the same comparison)."""
    budget = share * free
    mb = activation_bytes / 2**20
    if activation_bytes > budget:
        return True, f"activations {mb:.0f} MB > {share:g} x free {free / 2**20:.0f} MB"
    return False, f"activations {mb:.0f} MB <= {share:g} x free {free / 2**20:.0f} MB"
