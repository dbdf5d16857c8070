"""What generation jails run, by name ("module:function"): the driver names the handlers and only the jail
imports their modules, so the generation driver never imports torch (about 1.5 s of every run)."""
from __future__ import annotations

_PACKAGE = __name__.rsplit(".", 1)[0]
VALIDATE = f"{_PACKAGE}.validate:validate_trial"  # one model file checked (validate.check_model_file)
WARM = (f"{_PACKAGE}.warm:warm_up", f"{_PACKAGE}.warm:warm_space")  # a zygote's warm-up before it forks
