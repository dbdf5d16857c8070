"""Every dimension of the space reaches the built model: the public reference's bug, never again.

For each dimension, two specs that differ only in that dimension must build models whose architecture
signatures (module tree + eval dataflow graph, computed from the instantiated model) differ.
"""
import pytest

from ab.gpt.brute.fract.fractal_template import render
from ab.gpt.brute.fract.space.space import Space
from ab.gpt.brute.fract.validate import check_model_file

# two values for every dimension; small channels keep it fast
ALTERNATIVES = dict(
    depth=(2, 3), columns=(2, 3), plain_layers=(5, 10), channels=((8, 16, 16), (16, 16, 16)),
    conv=("conv3x3", "conv5x5"), norm=("bn", "inorm"), act=("relu", "gelu"),
    order=("conv-norm-act", "norm-act-conv"), dropout=(0.0, 0.2), join=("mean", "max"),
    local_drop=(0.15, 0.3), global_drop=(0.5, 0.25), pool=("max", "avg"), head=("gap", "flatten"),
)


def signature(spec, registry, tmp_path):
    path = tmp_path / f"{spec.name}.py"
    path.write_text(render(spec, registry))
    return check_model_file(str(path))["signature"]


def pairs(kind, registry):
    space = Space.default(registry, kind=kind).with_values(**{k: v[:1] for k, v in ALTERNATIVES.items()})
    base = {name: values[0] for name, values in space.dimensions().items()}
    for name in space.dimensions():
        changed = dict(base, **{name: ALTERNATIVES[name][1]})
        yield name, space._spec(base), space._spec(changed)


@pytest.mark.parametrize("kind", ["fractal", "plain"])
def test_every_dimension_changes_the_built_model(kind, registry, tmp_path):
    names = []
    for name, a, b in pairs(kind, registry):
        assert a.spec_hash != b.spec_hash, name
        assert signature(a, registry, tmp_path) != signature(b, registry, tmp_path), \
            f"dimension {name!r} does not reach the built model"
        names.append(name)
    # the test covers every dimension the space declares for this kind
    assert set(names) == set(Space(kind=kind).dimensions())


def test_identical_specs_give_identical_signatures(registry, tmp_path):
    space = Space.default(registry)
    spec = space.point(123)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert signature(spec, registry, tmp_path / "a") == signature(spec, registry, tmp_path / "b")
