"""Hook implementations: one layer family with a conv option and a norm option."""
from ab.gpt.brute.fract.space.families import LayerFamily, LayerOption
from ab.gpt.brute.fract.space.hookspecs import hookimpl

GROUPS_HELPER = '''def group_count(channels, most=8):
    """The largest number of groups <= most that divides channels."""
    return max(g for g in range(1, most + 1) if channels % g == 0)'''

FAMILY = LayerFamily("separable", (
    LayerOption(
        "dwsep3x3", "conv",
        "nn.Sequential(nn.Conv2d({c_in}, {c_in}, kernel_size=3, padding=1, groups={c_in}, bias=False), "
        "nn.Conv2d({c_in}, {c_out}, kernel_size=1, bias=False))",
        description="depthwise 3x3 then pointwise 1x1 convolution"),
    LayerOption("gnorm", "norm", "nn.GroupNorm(group_count({ch}), {ch})", helper=GROUPS_HELPER,
                description="group normalization, up to 8 groups"),
))


@hookimpl
def fractal_layer_families():
    return [FAMILY]
