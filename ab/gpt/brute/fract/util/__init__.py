"""Plumbing shared by every stage: atomic writes, folder locks, paths, a progress meter, CLI helpers."""
