"""Model names in nn-dataset's grammar, the old-name mapping, and Larsson's dropout schedule in the spec."""
import json
from pathlib import Path

import pytest

from ab.gpt.brute.fract.lemur.names import code_model_name, config_name, is_lemur_name, migrated_name
from ab.gpt.brute.fract.space.spec import ArchSpec, SpecError, larsson_rates

OLD = Path(__file__).parent / "old_scheme" / "models" / "manifest.jsonl"


def test_config_name_splits_back_with_nn_datasets_own_function():
    from ab.nn.util.Util import conf_to_names

    name = "FractalNet-N2-C3-w16-conv3x3-bn-relu-drop0p2-mean-maxpool-gap-0123456789"
    assert conf_to_names(config_name(name)) == ("img-classification", "cifar-10", "acc", name)
    with pytest.raises(ValueError, match="migrate"):
        config_name("FractalNet_N2_C3_0123456789")


def test_old_names_map_onto_the_names_todays_code_gives_the_same_spec():
    records = [json.loads(line) for line in OLD.read_text().splitlines()]
    assert records and all("_" in r["name"] for r in records)
    for r in records:
        spec = ArchSpec.from_dict(r["spec"])
        assert spec.spec_hash == r["spec_hash"]  # adding block_dropout changed no existing hash
        assert migrated_name(r["name"]) == spec.name and is_lemur_name(spec.name)
        assert migrated_name(spec.name) == spec.name  # idempotent


def test_code_proposal_names_follow_the_grammar_and_the_old_mapping():
    old = "FractalNet_llm_my_model__x_abcdef0123"  # what the old scheme made of 'FractalNet_llm_my model? x'
    new = code_model_name("FractalNet_llm_my model? x", "abcdef0123")
    assert is_lemur_name(new) and new == migrated_name(old) == "FractalNet-llm-my-model-x-abcdef0123"


def test_larsson_rates_are_the_papers_and_scale_to_the_depth():
    assert larsson_rates(5) == (0.0, 0.1, 0.2, 0.3, 0.4)
    assert larsson_rates(3) == (0.0, 0.2, 0.4) and larsson_rates(2) == (0.0, 0.4) and larsson_rates(1) == (0.0,)
    assert larsson_rates(9)[0] == 0.0 and larsson_rates(9)[-1] == 0.4 and len(larsson_rates(9)) == 9


def test_block_dropout_is_recorded_in_the_spec_and_checked():
    base = dict(depth=3, columns=2, channels=(8, 16, 16), layers=("conv3x3", "bn", "relu", "dropout"))
    spec = ArchSpec(block_dropout=larsson_rates(3), **base)
    assert ArchSpec.from_json(spec.to_json()) == spec and spec.to_dict()["block_dropout"] == [0.0, 0.2, 0.4]
    assert spec.dropout_rates() == (0.0, 0.2, 0.4) and "drop0x0p2x0p4" in spec.name.split("-")
    assert ArchSpec(dropout=0.2, **base).dropout_rates() == (0.2, 0.2, 0.2)
    with pytest.raises(SpecError, match="block_dropout"):
        ArchSpec(block_dropout=(0.1, 0.2), **base)  # one rate per block
    with pytest.raises(SpecError, match="block_dropout"):
        ArchSpec(dropout=0.2, block_dropout=(0.0, 0.2, 0.4), **base)  # not both
