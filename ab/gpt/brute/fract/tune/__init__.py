"""Per-machine policies for training sweeps (issue 12): memory, probes, compile, halving, plan."""
