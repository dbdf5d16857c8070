"""What each model's fresh fork inherits from its jail's zygote: what training needs already imported (an
optimizer's constructor imports torch._dynamo, about 0.7 s, which every trial would otherwise pay), and the
zygote's objects frozen out of the fork's garbage collections, which stay on."""
from __future__ import annotations

import pytest

from ab.gpt.brute.fract.trial import TrialLimits, data
from ab.gpt.brute.fract.trial.executors import LocalExecutor

from .kit import jail_data, model, train_trial

INHERITS = model(init=(
    "import gc, sys\n"
    "state = ('torch._dynamo' in sys.modules, gc.isenabled(), gc.get_freeze_count() > 50000)\n"
    "if state != (True, True, True):\n"
    "    raise RuntimeError(f'fork state (dynamo imported, gc on, zygote frozen): {state}')"))


@pytest.fixture(scope="module")
def prepared(cifar_dir, tmp_path_factory):
    return data.prepare(data.locate(cifar_dir), tmp_path_factory.mktemp("cache")).to_dict()


def test_every_fork_starts_with_training_imports_done_and_the_zygote_frozen(prepared):
    with LocalExecutor(1, TrialLimits(), data=jail_data(prepared)) as ex:
        results = [ex.submit(train_trial(INHERITS, prepared)).result() for _ in range(2)]
    assert [r.status for r in results] == ["trained", "trained"], [r.message for r in results]
