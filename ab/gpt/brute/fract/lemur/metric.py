"""The `acc` metric in nn-dataset's metric interface (top-1 classification accuracy).

nn-dataset loads a metric as module `ab.nn.metric.<name>` and calls `create_metric(out_shape)`; its trainer
then calls `reset()`, the object once per test batch with (outputs, labels), and `result()`. The 2.2.11
wheel ships no `acc` module (the full LEMUR DB carries one in its `metric` table), so we register this
file's source under the name `acc`: nn-dataset rebuilds `ab/nn/metric/acc.py` from that row when it
trains. This file is self-contained (torch and nn-dataset's BaseMetric only) for that reason.
"""
import torch

from ab.nn.metric.base.base import BaseMetric


class Accuracy(BaseMetric):
    """Share of samples whose highest-scoring class is the label."""

    def reset(self):
        self.correct = 0
        self.total = 0

    def update(self, outputs, targets):
        predicted = torch.as_tensor(outputs).argmax(dim=1)
        targets = torch.as_tensor(targets).to(predicted.device).view(-1)
        self.correct += int((predicted == targets).sum().item())
        self.total += int(targets.numel())

    def __call__(self, outputs, targets):
        self.update(outputs, targets)
        return self.correct, self.total

    def result(self):
        return self.correct / self.total if self.total else 0.0


def create_metric(out_shape=None):
    return Accuracy()
