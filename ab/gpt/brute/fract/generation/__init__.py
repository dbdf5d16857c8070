"""Generation: render specs to model files, check them statically and in jails, keep the manifest."""
