"""What a generation jail's zygote runs once before it forks (named to the jail by `handlers.WARM`): validations
of trusted models, so that each forked validation finds torch's lazy state and meta kernels ready."""
from __future__ import annotations

from pathlib import Path

from ..space.registry import build_registry
from ..space.space import Space
from .template import render
from .validate import check_model_file

WARM_MODEL = '''
import torch, torch.nn as nn
def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}
class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.1),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, out_shape[0]))
        self.to(device)
    def forward(self, x):
        return self.f(x)
    def train_setup(self, prm):
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])
    def learn(self, data):
        return 0.0, 0.0
'''


def warm_up(scratch: Path) -> None:
    """Validate one tiny model on the meta device, so a forked validation starts with torch's lazy state
    initialised (meta only: no compute threads start)."""
    path = scratch / ".warm_up.py"
    path.write_text(WARM_MODEL)
    try:
        check_model_file(str(path), mode="meta")
    finally:
        path.unlink(missing_ok=True)


def warm_space(scratch: Path) -> None:
    """Validate, in the zygote, trusted renders of our own template that cover every layer combination
    and block shape of the default space (depth 4, two columns), so each forked child finds the meta
    kernels it needs already cached (generation only; about 2-3 s per jail)."""
    reg = build_registry(third_party=False)
    path = scratch / ".warm_space.py"
    try:
        for spec in Space.default(reg):
            if spec.depth == 4 and spec.columns == 2 and spec.dropout > 0:
                path.write_text(render(spec, reg))
                check_model_file(str(path), mode="meta")
    finally:
        path.unlink(missing_ok=True)

