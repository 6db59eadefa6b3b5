"""Model registry: small image classifiers for 1x28x28 inputs.

    from engine.models import create_model, list_models
    model = create_model("cnn", num_classes=10)

Every factory takes `num_classes` and optional keyword arguments; a checkpoint records all of them
(`resolve_model_args`, defaults filled in) and rebuilds its own model with `create_model(name, **model_args)`.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


def resolve_model_args(name: str, **kwargs) -> dict:
    """Every argument of the model's factory, the defaults filled in: what a checkpoint records, so a model
    rebuilds the same however the defaults change later."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    bound = inspect.signature(_REGISTRY[name]).bind(**kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


@dataclass
class InputSpec:
    """What a model expects; travels inside every checkpoint and export so all stages normalise alike."""
    channels: int = 1
    height: int = 28
    width: int = 28
    mean: float = 0.1307
    std: float = 0.3081
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    # How a user image is framed: "digit" as MNIST was made (20 px box, centre of mass, stroke weight),
    # "object" as Fashion-MNIST was made (longest side to 28 px, centred by bounding box).
    layout: str = "digit"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        return cls(**d)  # checkpoints from before `layout` existed get the default, "digit"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


# ----------------------------------------------------------------------------------------------------
# MLP: the seeds' two-layer network


class MLP(nn.Module):
    def __init__(self, num_classes: int = 10, hidden: int = 256, in_features: int = 784):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)  # (B, 784)
        return self.fc2(F.relu(self.fc1(x)))


@register_model
def mlp(num_classes: int = 10, hidden: int = 256) -> nn.Module:
    return MLP(num_classes, hidden)


# ----------------------------------------------------------------------------------------------------
# The seeds' three-convolution CNN, with shapes that are right for 28x28 input:
# 28 -conv3-> 26 -conv3-> 24 -pool2-> 12 -conv3-> 10 -pool2-> 5, so the classifier sees 64*5*5 features.


class SimpleCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 32, 3)
        self.conv3 = nn.Conv2d(32, 64, 3)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 5 * 5, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))                   # (B, 32, 26, 26)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 32, 12, 12)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)  # (B, 64, 5, 5)
        x = self.dropout(torch.flatten(x, 1))
        return self.fc2(F.relu(self.fc1(x)))


@register_model
def simple_cnn(num_classes: int = 10) -> nn.Module:
    return SimpleCNN(num_classes)


# ----------------------------------------------------------------------------------------------------
# RNN: reads the image one row (28 pixels) per time step.


class RowRNN(nn.Module):
    def __init__(self, num_classes: int = 10, hidden: int = 128, cell: str = "gru", layers: int = 1):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(input_size=28, hidden_size=hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(x.shape[0], 28, 28)  # (B, T=28 rows, 28 pixels)
        out, _ = self.rnn(rows)               # (B, 28, hidden)
        return self.fc(out[:, -1])


@register_model
def rnn(num_classes: int = 10, hidden: int = 128, cell: str = "gru", layers: int = 1) -> nn.Module:
    return RowRNN(num_classes, hidden, cell, layers)


# ----------------------------------------------------------------------------------------------------
# CNN (default): conv-BN-ReLU blocks, pooling early so the expensive 3x3 convolutions run at 14x14 and
# 7x7, then global average pooling instead of a large fully connected layer. BatchNorm folds into the
# convolutions at export time, so inference pays only for the convolutions.


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16, dropout: float = 0.1):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(1, w),            # (B, w, 28, 28)
            conv_bn(w, w),
            nn.MaxPool2d(2),          # (B, w, 14, 14)
            conv_bn(w, 2 * w),
            conv_bn(2 * w, 2 * w),
            nn.MaxPool2d(2),          # (B, 2w, 7, 7)
            conv_bn(2 * w, 4 * w),
            conv_bn(4 * w, 4 * w),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (B, 4w, 1, 1)
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(4 * w, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model
def cnn(num_classes: int = 10, width: int = 16, dropout: float = 0.1) -> nn.Module:
    # width 16: 14.7 MFLOP, 99.27 % on MNIST after one epoch; the shipped models use width 32 (58 MFLOP)
    # for the last tenth of a percent.
    return CNN(num_classes, width, dropout)


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> int:
    """Multiply-adds x 2 of one forward pass, counted with torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(input_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())
