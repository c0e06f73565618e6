"""Tiny face models brought from outside faceprobe, for the bring-your-own-model tests (``byom_helper:make``)."""

from __future__ import annotations

import torch
from torch import nn

from probes.backbones import wrap_backbone


class TinyNet(nn.Module):
    """Conv stem -> conv -> pool -> fc (16-D); a classifier head that forward never uses; ReLU used twice."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.BatchNorm2d(4))
        self.act = nn.ReLU()  # runs twice per forward pass: not a tap
        self.body = nn.Conv2d(4, 8, 3, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, dim)
        self.head = nn.Linear(dim, 10)  # training-time classifier: not on the forward path

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.act(self.body(self.act(self.stem(x)))))))


class Recorder(nn.Module):
    """Returns the mean of each input channel, and keeps the last input: shows what the backbone fed it."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return x.mean(dim=(2, 3))


def make(dim: str = "16") -> nn.Module:
    """A seeded TinyNet (``byom_helper:make`` or ``byom_helper:make=32``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TinyNet(int(dim)).eval()


def make_backbone() -> object:
    """A FaceBackbone with its own preprocessing (64 x 64 BGR, euclidean)."""
    return wrap_backbone(make(), input_size=64, colour="bgr", mean=0.0, std=255.0, metric="euclidean", name="tiny")


def make_tuple() -> nn.Module:
    class Pair(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)), x.std(dim=(2, 3))
    return Pair()


def not_a_module() -> object:
    return "a string"


def broken() -> nn.Module:
    raise RuntimeError("weights server unreachable")


NOT_CALLABLE = 3
