"""The rendered model file: LEMUR contract, FractalNet semantics, drop-path, training step."""
import jinja2
import pytest
import torch

from ab.gpt.brute.fract import __version__
from ab.gpt.brute.fract.generation import codecheck
from ab.gpt.brute.fract.fractal_template import render
from ab.gpt.brute.fract.generation.template import _template
from ab.gpt.brute.fract.space.spec import ArchSpec
from ab.gpt.brute.fract.trial.model_file import import_isolated


def build(registry, tmp_path, **kw):
    spec = ArchSpec(**{**dict(depth=2, columns=3, channels=(4, 8), layers=("conv3x3", "bn", "relu")), **kw})
    path = tmp_path / f"{spec.name}.py"
    path.write_text(render(spec, registry))
    module = import_isolated(path)
    torch.manual_seed(0)
    net = module.Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9}, torch.device("cpu"))
    net.amp = False
    return spec, path, module, net


def test_file_header_static_checks_and_contract(registry, tmp_path):
    spec, path, module, net = build(registry, tmp_path)
    code = path.read_text()
    assert spec.to_json() in code and __version__ in code
    assert codecheck.check_source(code) == [] and codecheck.check_contract(code) == []
    assert module.supported_hyperparameters() == {"lr", "momentum"}
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_template_is_strict_about_missing_values():
    with pytest.raises(jinja2.UndefinedError):
        _template().render(name="x")


@pytest.mark.parametrize("columns", [1, 2, 3, 4])
def test_block_has_fractal_op_counts(registry, tmp_path, columns):
    _, _, _, net = build(registry, tmp_path, columns=columns)
    block = net.blocks[0]
    assert [len(p) for p in block.paths] == [2 ** j for j in range(columns)]  # deepest: 2**(C-1)
    assert sum(len(p) for p in block.paths) == 2 ** columns - 1


REDUCE = {"mean": lambda t: t.mean(0), "sum": lambda t: t.sum(0), "max": lambda t: t.amax(0)}


def _recursive_reference(block, z, join="mean"):
    """f_1 = op; f_(C+1)(z) = join(f_C(f_C(z)), op(z)), joins flattened into one (Larsson et al.: a mean)."""
    C = block.columns
    used = [0] * C

    def op(col, x):
        y = block.paths[col][used[col]](x)
        used[col] += 1
        return y

    def inputs(level, x):  # the inputs of f_level's last join
        if level == 1:
            return [op(C - 1, x)]
        return inputs(level - 1, f(level - 1, x)) + [op(C - level, x)]

    def f(level, x):
        return REDUCE[join](torch.stack(inputs(level, x)))

    return f(C, z)


@pytest.mark.parametrize("join", ["mean", "sum", "max"])
@pytest.mark.parametrize("columns", [2, 3, 4])
def test_flat_block_equals_recursive_definition(registry, tmp_path, columns, join):
    _, _, _, net = build(registry, tmp_path, columns=columns, join=join)
    net.eval()
    block = net.blocks[0]
    z = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(block(z), _recursive_reference(block, z, join), atol=1e-5)


@pytest.mark.parametrize("join", ["mean", "sum", "max"])
def test_channels_last_survives_the_joins(registry, tmp_path, join):
    """A channels_last model keeps that layout through every join (a stacked reduction would silently turn
    it contiguous and lose the speed the autotuner measured), with the same outputs."""
    _, _, _, net = build(registry, tmp_path, columns=3, join=join)
    net.global_drop = 0.0
    for b in net.blocks:
        b.local_drop = 0.0
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
    net = net.to(memory_format=torch.channels_last)
    layouts = []
    hooks = [m.register_forward_hook(lambda m, i, o: layouts.append(
        i[0].is_contiguous(memory_format=torch.channels_last))) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        out = net(x.contiguous(memory_format=torch.channels_last))
    for h in hooks:
        h.remove()
    assert len(layouts) == sum(2 ** 3 - 1 for _ in net.blocks) and all(layouts)
    assert torch.allclose(out, ref, atol=1e-5)


def _executed_columns(net, batch):
    seen = []
    hooks = [op.register_forward_hook(lambda m, i, o, b=b, j=j: seen.append((b, j)))
             for b, block in enumerate(net.blocks) for j, path in enumerate(block.paths) for op in path]
    net(batch)
    for h in hooks:
        h.remove()
    return seen


def test_global_drop_path_uses_one_column_in_every_block(registry, tmp_path):
    _, _, _, net = build(registry, tmp_path, columns=3, global_drop=1.0)
    net.train()
    chosen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        seen = _executed_columns(net, torch.randn(2, 3, 32, 32))
        cols = {j for _, j in seen}
        assert len(cols) == 1, "global drop-path must keep one column for the whole network"
        (j,) = cols
        assert len(seen) == 2 * 2 ** j  # every op of that column, in both blocks
        chosen.add(j)
    assert chosen == {0, 1, 2}


def test_local_drop_path_keeps_at_least_one_input(registry, tmp_path):
    _, _, _, net = build(registry, tmp_path, columns=3, local_drop=0.9, global_drop=0.0)
    net.train()
    block = net.blocks[0]
    torch.manual_seed(0)
    masks = [block.keep_mask(3) for _ in range(2000)]
    assert all(any(m) for m in masks)
    kept = sum(sum(m) for m in masks) / (3 * len(masks))
    assert 0.1 < kept < 0.5  # mostly dropped, never all
    torch.manual_seed(1)
    for _ in range(5):  # training forward runs with arbitrary drops
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_eval_uses_all_columns_or_the_deepest_alone(registry, tmp_path):
    _, _, _, net = build(registry, tmp_path, columns=3)
    net.eval()
    seen = _executed_columns(net, torch.randn(1, 3, 32, 32))
    assert sorted(seen) == sorted((b, j) for b in range(2) for j in range(3) for _ in range(2 ** j))
    net.eval_column = 2
    seen = _executed_columns(net, torch.randn(1, 3, 32, 32))
    assert {j for _, j in seen} == {2} and len(seen) == 8


def test_learn_trains_and_returns_accuracy_and_loss(registry, tmp_path):
    _, _, _, net = build(registry, tmp_path, columns=2, layers=("conv3x3", "bn", "relu", "dropout"),
                         dropout=0.1)
    net.amp = True  # bf16 autocast on CPU
    net.train_setup({"lr": 0.1, "momentum": 0.9})
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    first = net.learn([(x, y)] * 2)
    for _ in range(15):
        acc, loss = net.learn([(x, y)] * 2)
    assert isinstance(first[0], float) and 0 <= acc <= 1
    assert loss < first[1] * 0.75  # it fits a fixed batch


def test_learn_stops_on_divergence(registry, tmp_path):
    _, _, _, net = build(registry, tmp_path, columns=2)
    net.train_setup({"lr": 1e6, "momentum": 0.9})
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    acc, loss = net.learn([(x, y)] * 200)
    assert loss != loss or loss == float("inf")  # not finite
