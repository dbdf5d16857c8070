import json

import pytest

from ab.gpt.brute.fract.space.spec import ArchSpec, SpecError, result_name

BASE = dict(depth=3, columns=3, channels=(64, 128, 256), layers=("conv3x3", "bn", "relu", "dropout"),
            dropout=0.2)


def test_canonical_json_round_trips_and_is_order_independent():
    spec = ArchSpec(**BASE)
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    assert again.spec_hash == spec.spec_hash
    shuffled = json.dumps(dict(reversed(list(json.loads(spec.to_json()).items()))))
    assert ArchSpec.from_json(shuffled).to_json() == spec.to_json()


def test_hash_is_stable_and_sensitive():
    a, b = ArchSpec(**BASE), ArchSpec(**BASE)
    assert a.spec_hash == b.spec_hash and len(a.spec_hash) == 10
    assert a.replace(local_drop=0.3).spec_hash != a.spec_hash


def test_name_is_readable_in_nn_datasets_grammar_and_result_name():
    from ab.nn.util.Util import conf_to_names  # nn-dataset's own split of a pipeline name

    spec = ArchSpec(**BASE)
    assert "_" not in spec.name and spec.name.startswith("FractalNet-")
    assert spec.name.split("-")[1:] and all(t.isalnum() for t in spec.name.split("-"))
    for token in ("FractalNet", "N3", "C3", "conv3x3", "bn", "relu", "drop0p2", spec.spec_hash):
        assert token in spec.name.split("-")
    assert conf_to_names(result_name(spec.name))[3] == spec.name
    assert result_name(spec.name) == f"img-classification_cifar-10_acc_{spec.name}"


@pytest.mark.parametrize("change, words", [
    (dict(depth=0, channels=()), "depth"),
    (dict(columns=-1), "columns"),
    (dict(channels=(64, 128)), "channels"),
    (dict(dropout=1.0), "dropout"),
    (dict(join="median"), "join"),
    (dict(layers=("conv3x3", "relu")), "dropout"),
    (dict(local_drop=1.5), "local_drop"),
])
def test_invalid_specs_are_rejected_with_the_field_named(change, words):
    with pytest.raises(SpecError, match=words):
        ArchSpec(**{**BASE, **change})


def test_from_dict_rejects_unknown_and_missing_fields():
    d = ArchSpec(**BASE).to_dict()
    with pytest.raises(SpecError, match="unknown spec fields: colour"):
        ArchSpec.from_dict({**d, "colour": "red"})
    del d["depth"]
    with pytest.raises(SpecError, match="incomplete"):
        ArchSpec.from_dict(d)
