from ab.gpt.brute.fract.generation.codecheck import check_contract, check_source

OK = '''import torch
import torch.nn as nn
import math


def supported_hyperparameters():
    return {'lr', 'momentum'}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.fc = nn.Linear(math.prod(in_shape[1:]), out_shape[0])

    def forward(self, x):
        return self.fc(x.flatten(1))

    def train_setup(self, prm):
        pass

    def learn(self, data):
        return 0.0, 0.0
'''


def test_a_plain_model_passes():
    assert check_source(OK) == [] and check_contract(OK) == []


def test_forbidden_constructs_are_each_reported():
    bad = OK + '''
import os
from subprocess import run
x = eval("1")
y = open("f")
z = ().__class__
w = torch.load("m.pt")
v = getattr(torch, "load")
'''
    found = " | ".join(map(str, check_source(bad)))
    for needle in ("'os'", "'subprocess'", "'eval'", "'open'", "'__class__'", "'load'", "'getattr'"):
        assert needle in found


def test_contract_problems_are_named():
    broken = OK.replace("def learn(self, data)", "def fit(self, data)").replace(
        "in_shape, out_shape, prm, device", "shape")
    found = " | ".join(map(str, check_contract(broken)))
    assert "lacks method learn()" in found and "(self, in_shape, out_shape, prm, device)" in found
    assert "syntax error" in str(check_source("def f(:\n")[0])


def test_combined_check_equals_the_two_checks():
    from ab.gpt.brute.fract.generation.codecheck import check_model_code

    bad = OK.replace("def learn(self, data)", "def fit(self, data)") + "\nimport os\n"
    assert list(map(str, check_model_code(bad))) == list(map(str, check_source(bad) + check_contract(bad)))
    assert check_model_code(OK) == []
