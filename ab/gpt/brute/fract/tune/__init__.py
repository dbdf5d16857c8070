"""Per-machine policies for training: memory, probes, compile, AMP/checkpointing choices, cost model."""
