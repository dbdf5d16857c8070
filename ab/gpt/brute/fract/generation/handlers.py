"""What generation jails run, by name ("module:function"): the driver names the handlers and only the jail
imports their modules, so the generation driver never imports torch (about 1.5 s of every run)."""
from __future__ import annotations

_PACKAGE = __name__.rsplit(".", 1)[0]
VALIDATE = f"{_PACKAGE}.validate:validate_trial"  # one model file checked (validate.check_model_file)
# a zygote's warm-up before it forks: torch's lazy state (cheap), then the meta kernels of every layer
# combination of the default space (2-3 s, which pays only over many validations)
WARM_UP = f"{_PACKAGE}.warm:warm_up"
WARM_SPACE = f"{_PACKAGE}.warm:warm_space"
WARM = (WARM_UP, WARM_SPACE)
