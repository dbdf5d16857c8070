"""The meta-kernel memo cache of validate.py: a hit gives what the kernel itself gives."""
from __future__ import annotations

import torch

from ab.gpt.brute.fract.generation import validate
from ab.gpt.brute.fract.generation.validate import MetaShapeCache

MODEL = '''
import torch, torch.nn as nn
def supported_hyperparameters():
    return {"lr", "momentum"}
class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.GELU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, out_shape[0]))
    def forward(self, x):
        return self.f(x)
    def train_setup(self, prm):
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])
    def learn(self, data):
        return 0.0, 0.0
'''


def test_a_second_validation_hits_for_every_op_and_gives_the_same_result(tmp_path, monkeypatch):
    cache = MetaShapeCache()
    monkeypatch.setattr(validate, "_META_CACHE", cache)
    path = tmp_path / "m.py"
    path.write_text(MODEL)
    first = validate.check_model_file(str(path))
    misses, hits = cache.misses, cache.hits
    second = validate.check_model_file(str(path))
    assert second == first
    assert cache.misses == misses  # convolution_backward (a None bias gradient) included
    assert cache.hits > hits
    monkeypatch.setattr(validate, "_META_CACHE", MetaShapeCache())
    assert validate.check_model_file(str(path)) == first


def test_a_hit_rebuilds_tuples_with_none_like_the_kernel():
    x = torch.empty(2, 3, 8, 8, device="meta")
    w = torch.empty(4, 3, 3, 3, device="meta")
    g = torch.empty(2, 4, 8, 8, device="meta")

    def run():
        return torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                   [True, True, False])

    plain = run()
    cache = MetaShapeCache()
    with cache:
        run()
        hit = run()
    assert (cache.misses, cache.hits) == (1, 1)
    assert type(hit) is type(plain) and len(hit) == len(plain) and hit[2] is None
    for a, b in zip(hit[:2], plain[:2]):
        assert (a.shape, a.stride(), a.dtype, a.device) == (b.shape, b.stride(), b.dtype, b.device)


def test_tensors_off_the_meta_device_bypass_the_cache():
    cache = MetaShapeCache()
    with cache:
        torch.relu(torch.ones(3))
        torch.relu(torch.ones(3))
    assert (cache.misses, cache.hits, len(cache.cache)) == (0, 0, 0)


def test_an_in_place_update_that_succeeded_returns_its_tensor_without_the_kernel_and_a_failing_one_always_raises():
    cache = MetaShapeCache()
    x = torch.empty(3, 4, device="meta")
    y = torch.empty(3, 4, device="meta")
    with cache:
        assert x.normal_(0.0, 1.0) is x
        misses = cache.misses
        assert y.normal_(0.0, 1.0) is y  # same metadata and arguments: a hit
        assert (cache.misses, cache.hits) == (misses, 1)
        for _ in range(2):  # the kernel's own error, every time (a failure is never memoised)
            try:
                x.normal_(0.0, -1.0)
            except RuntimeError as e:
                assert "std >= 0.0" in str(e)
            else:
                raise AssertionError("normal_ with a negative std did not raise")
        z = torch.empty(3, 4, device="meta")
        for _ in range(2):  # an in-place metadata change (a view update) always runs
            w = torch.empty(3, 4, device="meta")
            assert w.t_() is w and tuple(w.shape) == (4, 3)
        # two tensors: the other one's memory could overlap the updated one, so the kernel runs
        hits = cache.hits
        z.add_(torch.empty(3, 4, device="meta"))
        z.add_(torch.empty(3, 4, device="meta"))
        assert cache.hits == hits


def test_equal_scalars_of_different_types_are_different_keys():
    ints = torch.empty(3, dtype=torch.int64, device="meta")
    cache = MetaShapeCache()
    with cache:
        assert torch.add(ints, 1).dtype == torch.int64
        assert torch.add(ints, 1.0).dtype == torch.float32  # not the int result cached for 1
        assert torch.add(ints, True).dtype == torch.int64
