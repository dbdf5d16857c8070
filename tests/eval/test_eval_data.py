"""The tensor fast path gives the model exactly what nn-dataset's CIFAR-10 loader + transform would."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch
import torchvision

from ab.gpt.brute.fract.trial import batches, data


@pytest.fixture(scope="module")
def prepared(cifar_dir, tmp_path_factory):
    return data.prepare(data.locate(cifar_dir), tmp_path_factory.mktemp("cache")).to_dict()


def lemur_sets(cifar_dir, monkeypatch, flip_p: float):
    """nn-dataset's own loader and norm_flip transform, with the flip forced to always/never."""
    loader_mod = importlib.import_module("ab.nn.loader.cifar-10")
    norm_flip = importlib.import_module("ab.nn.transform.norm_flip")
    # the shared subset is shortened (md5 differs): skip torchvision's integrity checks, read it in place
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_load_meta", lambda self: None)
    monkeypatch.setattr(loader_mod, "data_dir", cifar_dir.parent)

    def transform_fn(norm):
        t = norm_flip.transform(norm)
        t.transforms[0].p = flip_p
        return t

    _, _, train, test = loader_mod.loader(transform_fn, "img-classification")
    return train, test


def test_norm_constants_come_from_lemur_loader():
    mean, std = data.lemur_norm()
    assert mean == (0.4914, 0.4822, 0.4465) and std == (0.2470, 0.2435, 0.2616)
    assert (mean, std) == data.lemur_norm_imported()  # read from the source = the imported module's values
    # reading them does not import the loader (and torchvision with it)
    code = ("import sys; from ab.gpt.brute.fract.trial import data; data.lemur_norm(); "
            "print(any(m.startswith('torchvision') for m in sys.modules), data.LOADER in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("flip", [False, True])
def test_fast_path_equals_lemur_transform(cifar_dir, prepared, monkeypatch, flip):
    train_set, test_set = lemur_sets(cifar_dir, monkeypatch, 1.0 if flip else 0.0)
    mean, std = data.lemur_norm()
    for split, lemur in (("train", train_set), ("test", test_set)):
        x, y = batches.load_split(prepared, split, limit=48)
        fast = batches.TensorCifar(x, y, mean, std, flip=True)
        ours = fast.transform(fast.images, torch.full((len(y),), flip))
        theirs = torch.stack([lemur[i][0] for i in range(len(y))])
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0), (ours - theirs).abs().max()
        assert y.tolist() == [lemur[i][1] for i in range(len(y))]
    assert len(batches.load_split(prepared, "train")[1]) == len(train_set)
    assert len(batches.load_split(prepared, "test")[1]) == len(test_set)


def test_batches_cover_the_split_once_and_are_seeded(prepared):
    mean, std = data.lemur_norm()
    x, y = batches.load_split(prepared, "train", limit=100)
    ds = batches.TensorCifar(x, y, mean, std, flip=True, channels_last=True)
    first = list(ds.batches(16, torch.Generator().manual_seed(3), shuffle=True))
    again = list(ds.batches(16, torch.Generator().manual_seed(3), shuffle=True))
    assert sum(len(b[1]) for b in first) == 100 and len(first) == ds.num_batches(16) == 7
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert first[0][0].is_contiguous(memory_format=torch.channels_last) and first[0][0].dtype == torch.float32
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == sorted(y.tolist())


def test_locate_rules(cifar_dir, tmp_path, monkeypatch):
    assert data.locate(cifar_dir) == cifar_dir.resolve()
    assert data.locate(cifar_dir.parent) == cifar_dir.resolve()  # the parent folder works too
    monkeypatch.setenv(data.DATA_ENV, str(cifar_dir))
    assert data.locate(None, root=tmp_path) == cifar_dir.resolve()
    monkeypatch.delenv(data.DATA_ENV)
    with pytest.raises(data.DataError, match="no CIFAR-10 batches in"):
        data.locate(tmp_path)
    with pytest.raises(data.DataError, match=r"put the python-version batches there.*--data-dir"):
        data.locate(None, root=tmp_path, download=False)


def test_device_path_flips_the_same_images_as_lemur_norm_flip(cifar_dir, prepared, monkeypatch):
    """One shuffled epoch, seed fixed: the device path (uint8 split, batched gather + flip + normalise) gives
    image for image what nn-dataset's own dataset and unmodified norm_flip transform give when they load the
    same images in the same order with torch's generator where the device path's stream continues."""
    train_set, _ = lemur_sets(cifar_dir, monkeypatch, 0.5)  # RandomHorizontalFlip as shipped (p = 0.5)
    mean, std = data.lemur_norm()
    x, y = batches.load_split(prepared, "train", limit=96)
    fast = batches.TensorCifar(x, y, mean, std, flip=True)
    gen = torch.Generator().manual_seed(1234)
    ours = list(fast.batches(16, gen, shuffle=True))
    gen = torch.Generator().manual_seed(1234)
    order = torch.randperm(len(y), generator=gen)  # what `draws` takes first; the flips continue the stream
    torch.set_rng_state(gen.get_state())
    theirs = [train_set[i] for i in order.tolist()]  # each item draws its flip from torch's generator
    tx = torch.stack([t[0] for t in theirs])
    ox = torch.cat([b[0] for b in ours])
    assert torch.allclose(ox, tx, atol=1e-6, rtol=0), (ox - tx).abs().max()
    assert torch.cat([b[1] for b in ours]).tolist() == [t[1] for t in theirs]
    # the seed flips some images and not others, so both branches were compared
    _, flips = fast.draws(torch.Generator().manual_seed(1234), shuffle=True)
    assert 0 < int(flips.sum()) < len(flips)
    unflipped = fast.transform(fast.images.index_select(0, order), None)
    differs = [not torch.allclose(a, b, atol=1e-6) for a, b in zip(unflipped, torch.cat([b[0] for b in ours]))]
    assert differs == flips.tolist()  # exactly the drawn images were flipped (none is mirror-symmetric)
