"""The search space: specs, layer families, the space itself, generators, the plugin registry and the
static code check. Everything that decides *what* model files exist, before any code runs."""
