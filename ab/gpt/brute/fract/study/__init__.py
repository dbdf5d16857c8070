"""Declarative studies: a study.toml declares the sample, baselines, protocol and questions; `study run`
generates, trains (halving for breadth, then seeds for the selection), reports and answers the questions."""
