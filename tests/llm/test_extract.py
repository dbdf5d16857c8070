"""Output handling: reasoning stripped, JSON and code extracted, specs checked, each failure has a reason."""
from __future__ import annotations

import json

import pytest

from ab.gpt.brute.fract.space.generators import CodeProposal
from ab.gpt.brute.fract.space.registry import build_registry
from ab.gpt.brute.fract.space.spec import ArchSpec
from nn_gpt_fractal_llm import extract

REG = build_registry(third_party=False)
SPEC = {"depth": 2, "columns": 2, "channels": [8, 16], "layers": ["conv3x3", "bn", "relu"]}


@pytest.mark.parametrize("text, answer", [
    ("<think>try [1]</think>\nanswer", "answer"),
    ("plan... </think> answer", "answer"),  # the chat template opened the block
    ("answer <think>cut off while thinking", "answer"),
    ("<THINK>a</THINK>x<think>b</think>y", "xy"),
    ("no reasoning", "no reasoning"),
])
def test_strip_reasoning(text, answer):
    assert extract.strip_reasoning(text) == answer


def test_specs_from_fenced_json_after_reasoning():
    text = "<think>I considered {\"depth\": 9}</think>\nHere:\n```json\n" + json.dumps([SPEC, {**SPEC, "depth": 1,
           "channels": [4]}]) + "\n```\nDone."
    items = extract.parse_specs(text, REG)
    assert all(isinstance(i, ArchSpec) for i in items) and [i.depth for i in items] == [2, 1]


@pytest.mark.parametrize("wrapper", [
    lambda s: json.dumps({"specs": [s]}),
    lambda s: "Sure! " + json.dumps(s) + " is my pick.",
    lambda s: "```\n" + json.dumps([s]) + "\n```",
])
def test_specs_in_other_shapes(wrapper):
    items = extract.parse_specs(wrapper(SPEC), REG)
    assert len(items) == 1 and isinstance(items[0], ArchSpec)


@pytest.mark.parametrize("obj, reason", [
    ({**SPEC, "depth": 3}, "channels"),
    ({**SPEC, "layers": ["conv3x3", "warp_drive"]}, "unknown layer option"),
    ({**SPEC, "layers": ["bn", "relu"]}, "conv-slot"),
    ({**SPEC, "colour": "red"}, "unknown spec fields"),
    ({"depth": 2}, "incomplete spec"),
    ({**SPEC, "dropout": 0.3}, "dropout"),
    ("conv3x3", "must be a JSON object"),
])
def test_bad_specs_are_rejected_with_reason(obj, reason):
    [item] = extract.parse_specs(json.dumps([obj]), REG)
    assert isinstance(item, extract.Rejection) and reason in item.reason


@pytest.mark.parametrize("text, reason", [
    ("", "no answer"),
    ("<think>never finished", "no answer"),
    ("I cannot help with that.", "no JSON spec"),
    ("```json\n[{\"depth\": 2,,]\n```", "not valid JSON"),
])
def test_unusable_answers_are_rejected(text, reason):
    [item] = extract.parse_specs(text, REG)
    assert isinstance(item, extract.Rejection) and reason in item.reason


CODE = "import torch\n\ndef supported_hyperparameters():\n    return {'lr'}\n\nclass Net(torch.nn.Module):\n    pass\n"


@pytest.mark.parametrize("text", [
    "<think>x</think>```python\n" + CODE + "```",
    "Notes first\n```py\nprint(1)\n```\nthen\n```python\n" + CODE + "```",
    CODE,
    "```python\n" + CODE,  # unterminated fence (output cut at max tokens)
])
def test_code_extraction(text):
    [item] = extract.parse_code(text, "M", "test")
    assert isinstance(item, CodeProposal) and item.code.strip() == CODE.strip()


def test_code_without_net_is_rejected():
    [item] = extract.parse_code("```python\nprint('hi')\n```", "M", "test")
    assert isinstance(item, extract.Rejection) and "class Net" in item.reason


def test_outside_space():
    from ab.gpt.brute.fract.space.space import Space

    space = Space.default(REG).with_values(depth=(1, 2), channels=((8, 16),))
    inside = space.point(5)
    assert extract.outside_space(inside, space) is None
    assert "depth" in extract.outside_space(inside.replace(depth=3, channels=(8, 16, 16)), space)
    assert "channels" in extract.outside_space(ArchSpec.from_dict({**SPEC, "channels": [8, 32]}), space)
    assert "layers" in extract.outside_space(ArchSpec.from_dict({**SPEC, "layers": ["dil3x3"]}), space)
