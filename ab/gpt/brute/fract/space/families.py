"""Layer families: named layer options that a column op is built from.

Each option renders to one constructor expression in the generated model file. Placeholders:
{c_in}/{c_out} for a channel-changing layer (slot "conv"), {ch} for a channel-keeping one, {p} for the
dropout rate. An option may also carry helper source (module-level code) the expression needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SLOTS = ("conv", "norm", "act", "drop")
NONE = "none"  # the "no layer" choice for the norm and act slots


@dataclass(frozen=True)
class LayerOption:
    name: str
    slot: str
    code: str
    helper: str = ""
    in_default_space: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.slot not in SLOTS:
            raise ValueError(f"layer option {self.name!r}: slot {self.slot!r} is not one of {SLOTS}")
        if not self.name.replace("_", "").isalnum() or self.name == NONE:
            raise ValueError(f"layer option name {self.name!r} must be alphanumeric (underscores allowed)")


@dataclass(frozen=True)
class LayerFamily:
    name: str
    options: tuple[LayerOption, ...] = field(default_factory=tuple)


BUILTIN_FAMILIES = (
    LayerFamily("convolution", (
        LayerOption("conv3x3", "conv", "nn.Conv2d({c_in}, {c_out}, kernel_size=3, padding=1, bias=False)",
                    description="3x3 convolution"),
        LayerOption("conv5x5", "conv", "nn.Conv2d({c_in}, {c_out}, kernel_size=5, padding=2, bias=False)",
                    description="5x5 convolution"),
        LayerOption("dil3x3", "conv",
                    "nn.Conv2d({c_in}, {c_out}, kernel_size=3, padding=2, dilation=2, bias=False)",
                    in_default_space=False, description="3x3 convolution, dilation 2"),
        LayerOption("conv1x1", "conv", "nn.Conv2d({c_in}, {c_out}, kernel_size=1, bias=False)",
                    in_default_space=False, description="1x1 convolution"),
    )),
    LayerFamily("normalization", (
        LayerOption("bn", "norm", "nn.BatchNorm2d({ch})", description="batch normalization"),
        LayerOption("inorm", "norm", "nn.InstanceNorm2d({ch}, affine=True)",
                    description="instance normalization (affine)"),
    )),
    LayerFamily("activation", (
        LayerOption("relu", "act", "nn.ReLU()"),
        LayerOption("gelu", "act", "nn.GELU()"),
        LayerOption("silu", "act", "nn.SiLU()"),
        LayerOption("elu", "act", "nn.ELU()", in_default_space=False),
        LayerOption("lrelu", "act", "nn.LeakyReLU(0.1)", in_default_space=False),
        LayerOption("tanh", "act", "nn.Tanh()", in_default_space=False),
    )),
    LayerFamily("dropout", (
        LayerOption("dropout", "drop", "nn.Dropout({p})", description="element-wise dropout"),
    )),
)
