"""Which CIFAR-10 folders torchvision's integrity check accepts through our recorded sums (lemur/subset.py):
the shared subset by the sums recorded in the code, other local folders only by an md5 file named in the
environment, and nothing else. (nn-dataset's own trainer runs on the shared subset in test_roundtrip.)"""
from __future__ import annotations

from ab.gpt.brute.fract.lemur.subset import MD5_ENV, SUBSET_MD5, matching_sums

from tests.conftest import SUBSET

from .lemurkit import md5_file

FILES = sorted(SUBSET_MD5)


def test_the_shared_subset_is_recognised_by_its_recorded_sums(cifar_dir, monkeypatch):
    monkeypatch.delenv(MD5_ENV, raising=False)
    assert matching_sums(cifar_dir, FILES) == (SUBSET_MD5 if cifar_dir == SUBSET else None)


def test_another_folder_only_by_the_md5_file_it_is_given(small_cifar, tmp_path, monkeypatch):
    monkeypatch.delenv(MD5_ENV, raising=False)
    assert matching_sums(small_cifar, FILES) is None
    sums = md5_file(small_cifar, tmp_path / "cifar.md5")
    monkeypatch.setenv(MD5_ENV, str(sums))
    assert matching_sums(small_cifar, FILES) is not None
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in FILES:
        (damaged / f).write_bytes((small_cifar / f).read_bytes())
    (damaged / "test_batch").write_bytes((small_cifar / "test_batch").read_bytes()[:-1] + b"\0")
    assert matching_sums(damaged, FILES) is None
