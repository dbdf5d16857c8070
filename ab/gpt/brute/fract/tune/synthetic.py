"""Trusted synthetic conv stacks standing in for a class of generated models in probes and calibration.

Model files are untrusted, so probes never run them: a shape class (the block widths, rounded to powers of
two, and how many convs a block's deepest path has, bucketed) is enough to say which dtype, memory format
and thread packing run fastest, and how many FLOP/s this device achieves on such layers.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_CONVS = 4  # deeper blocks probe like 4-conv ones: the per-layer speed is what differs
BUCKET_BLOCKS, BUCKET_CONVS = 2, 2  # what a decision bucket keeps of a class (`decision_bucket`)


def round_width(c: int) -> int:
    """Nearest power of two (geometric rounding: 24 -> 32, 20 -> 16)."""
    if c < 1:
        raise ValueError(f"width {c} must be >= 1")
    lo = 1 << (c.bit_length() - 1)
    return lo * 2 if c * c >= 2 * lo * lo else lo


@dataclass(frozen=True, order=True)
class ShapeClass:
    widths: tuple[int, ...]  # per block, powers of two
    convs: int  # convs on a block's deepest path, 1..MAX_CONVS

    @property
    def key(self) -> str:
        return f"w{'-'.join(map(str, self.widths))}_c{self.convs}"

    @classmethod
    def parse(cls, key: str) -> "ShapeClass":
        """'w16-32-64_c2' -> ShapeClass((16, 32, 64), 2)."""
        try:
            w, c = key.split("_")
            if not (w.startswith("w") and c.startswith("c")):
                raise ValueError
            return cls.of(tuple(int(x) for x in w[1:].split("-")), int(c[1:]))
        except ValueError:
            raise ValueError(f"shape class {key!r}: write it as w<width>-<width>..._c<convs>, e.g. w16-32-64_c2") from None

    @classmethod
    def of(cls, channels, convs: int = 1) -> "ShapeClass":
        if not channels or convs < 1:
            raise ValueError(f"a shape class needs widths and convs >= 1 (got {channels}, {convs})")
        return cls(tuple(round_width(int(c)) for c in channels), min(int(convs), MAX_CONVS))


def shape_class_of_spec(spec: dict) -> ShapeClass:
    """The class of a generator spec (the manifest's `spec` dict): widths and the deepest path's length."""
    if spec.get("kind", "fractal") == "plain":
        per_block = max(1, int(spec.get("plain_layers", 1)) // max(1, int(spec["depth"])))
    else:
        per_block = 2 ** (int(spec["columns"]) - 1)
    return ShapeClass.of(spec["channels"], per_block)


def decision_bucket(shape: ShapeClass) -> ShapeClass:
    """The class whose probe decides for `shape`: its first `BUCKET_BLOCKS` blocks with `BUCKET_CONVS` convs
    each. Classes that differ only in later blocks or in conv count share one probe. The first blocks are the
    narrowest at the largest feature maps: every block has about the same FLOPs (width doubles, pixels
    quarter), and the narrow ones run them slowest, so they carry most of the step time; the conv count
    changes how many layers there are, not which variant runs each fastest."""
    return ShapeClass(shape.widths[:BUCKET_BLOCKS], BUCKET_CONVS)


def dominant_shape(specs_flops) -> ShapeClass:
    """The class carrying most of a sweep's FLOPs, from (spec, forward FLOPs) pairs; models without a spec
    are not counted (w16-32-64_c2 when none has one)."""
    weight: dict[ShapeClass, float] = {}
    for spec, flops in specs_flops:
        if spec:
            s = shape_class_of_spec(spec)
            weight[s] = weight.get(s, 0.0) + float(flops or 1)
    return max(weight, key=lambda s: (weight[s], s)) if weight else ShapeClass.of((16, 32, 64), 2)


def build(shape: ShapeClass, classes: int = 10):
    """conv3x3-bn-relu x convs per block, 2x2 max-pool after each block, global average pool, linear head
    (an nn.Sequential; torch is imported here, so that shape classes alone stay light)."""
    from torch import nn

    layers: list = []
    c = 3
    for w in shape.widths:
        for _ in range(shape.convs):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


def forward_flops(shape: ShapeClass, hw: int = 32) -> int:
    """Forward FLOPs of one 3 x hw x hw image (2 per multiply-add, convs and the head)."""
    flops, c, s = 0, 3, hw
    for w in shape.widths:
        for _ in range(shape.convs):
            flops += 2 * c * w * 9 * s * s
            c = w
        s = max(1, s // 2)
    return flops + 2 * c * 10
