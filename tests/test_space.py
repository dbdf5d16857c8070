import pytest

from ab.gpt.brute.fract.space.generators import random_sample, stratified_sample, Request
from ab.gpt.brute.fract.space.space import Space, SpaceError


def test_default_space_has_over_1200_canonical_specs(registry):
    space = Space.default(registry)
    space.validate(registry)
    specs = list(space)
    assert len(specs) >= 1200
    assert len({s.spec_hash for s in specs}) == len(specs)
    assert len({s.name for s in specs}) == len(specs)


def test_point_decoding_covers_every_value(registry):
    space = Space.default(registry)
    specs = [space.point(i) for i in range(space.raw_size)]
    assert {s.depth for s in specs} == set(space.depth)
    assert {s.columns for s in specs} == set(space.columns)
    assert {s.layers[0] for s in specs} >= {"conv3x3", "conv5x5", "bn", "inorm", "relu", "gelu", "silu"}
    with pytest.raises(IndexError):
        space.point(space.raw_size)


def test_one_column_points_collapse_to_one_canonical_spec(registry):
    space = Space.default(registry).with_values(columns=(1,), join=("mean", "max"), local_drop=(0.1, 0.3))
    specs = list(space)
    assert all(s.join == "mean" and s.local_drop == 0 and s.global_drop == 0 for s in specs)
    assert len(specs) * 4 == space.raw_size


def test_samplers_are_seeded_and_without_replacement(registry):
    space = Space.default(registry)
    a = [s.spec_hash for s, _ in zip(random_sample(space, Request(seed=3)), range(50))]
    b = [s.spec_hash for s, _ in zip(random_sample(space, Request(seed=3)), range(50))]
    c = [s.spec_hash for s, _ in zip(random_sample(space, Request(seed=4)), range(50))]
    assert a == b and a != c and len(set(a)) == 50
    strat = [s for s, _ in zip(stratified_sample(space, Request(seed=0)), range(16))]
    assert len({(s.depth, s.columns) for s in strat}) == 16  # one per (N, C) cell first


@pytest.mark.parametrize("change, message", [
    (dict(depth=(0,)), "depth 0"),
    (dict(columns=(-2,)), "columns -2"),
    (dict(conv=("conv9x9",)), "unknown conv option 'conv9x9'"),
    (dict(norm=("layernorm",)), "unknown norm option"),
    (dict(order=("conv-conv",)), "order"),
    (dict(dropout=(1.0,)), "dropout 1.0"),
    (dict(join=("median",)), "unknown join"),
    (dict(depth=()), "no values"),
])
def test_bad_spaces_name_the_problem(registry, change, message):
    with pytest.raises(SpaceError, match=message):
        Space.default(registry).with_values(**change).validate(registry)
