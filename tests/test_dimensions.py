"""Every dimension of the space reaches the built model: the public reference's bug, never again.

For each dimension, two specs that differ only in that dimension must build models whose architecture
signatures (module tree + eval dataflow graph, computed from the instantiated model) differ.
"""
import pytest

from ab.gpt.brute.fract.fractal_template import render
from ab.gpt.brute.fract.space.space import Space
from ab.gpt.brute.fract.generation.validate import check_model_file

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


@pytest.mark.parametrize("kind", ["fractal", "plain"])
def test_larsson_dropout_schedule_reaches_the_built_model(kind, registry, tmp_path):
    """The per-block schedule is a value of the dropout dimension beside the single rate: it changes the
    spec, the name and the built model (each block's Dropout carries that block's rate)."""
    space = Space.default(registry, kind=kind).with_values(**{k: v[:1] for k, v in ALTERNATIVES.items()})
    base = {name: values[0] for name, values in space.dimensions().items()}
    single, sched = space._spec(dict(base, dropout=0.2)), space._spec(dict(base, dropout="larsson"))
    assert sched.block_dropout == (0.0, 0.4) and sched.dropout == 0.0 and "dropout" in sched.layers
    assert "drop0x0p4" in sched.name.split("-") and "drop0p2" in single.name.split("-")
    assert signature(single, registry, tmp_path) != signature(sched, registry, tmp_path)
    path = tmp_path / "sched.py"
    path.write_text(render(sched, registry))
    from ab.gpt.brute.fract.trial.model_file import import_isolated

    net = import_isolated(path).Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9}, "cpu")
    rates = [[m.p for m in block.modules() if m.__class__.__name__ == "Dropout"] for block in net.blocks]
    assert [set(r) for r in rates] == [{0.0}, {0.4}]
