"""Small hand-built networks whose heads exercise every path of the channel game."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = 5


def stem(channels: int) -> nn.Sequential:
    """Two convolutions to ``channels`` maps of 8x8 on 16x16 inputs; its last ReLU is the explained layer."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, channels, 3, padding=1), nn.ReLU())


class GapNet(nn.Module):
    """Linear head: global average pooling + one linear layer (CAM's setting; LIFT-CAM is exact)."""

    def __init__(self, channels: int = 12):
        super().__init__()
        self.features = stem(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, CLASSES)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class VggNet(nn.Module):
    """Nonlinear head: max-pool, flatten, Linear-ReLU-Linear-ReLU-Linear (ReLU modules, used once each)."""

    def __init__(self, channels: int = 12):
        super().__init__()
        self.features = stem(channels)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(channels * 16, 32), nn.ReLU(inplace=True), nn.Dropout(),
                                        nn.Linear(32, 16), nn.ReLU(inplace=True), nn.Linear(16, CLASSES))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class FunctionalNet(VggNet):
    """The same head written with functional ReLUs, which hook-based DeepLIFT cannot see."""

    def forward(self, x):
        h = torch.flatten(self.pool(self.features(x)), 1)
        h = F.relu(self.classifier[0](h))
        h = F.relu(self.classifier[3](h))
        return self.classifier[5](h)


class ReusedReluNet(VggNet):
    """One ReLU module called twice in the head."""

    def forward(self, x):
        relu = self.classifier[1]
        h = torch.flatten(self.pool(self.features(x)), 1)
        return self.classifier[5](relu(self.classifier[3](relu(self.classifier[0](h)))))


class SkipNet(nn.Module):
    """The explained layer sits inside a residual block: the head needs a value that skips over it."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.inner = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(channels, channels, 3, padding=1)
        self.fc = nn.Linear(channels, CLASSES)

    def forward(self, x):
        x = self.stem(x)
        y = F.relu(self.out(self.inner(x)) + x)
        return self.fc(y.mean((2, 3)))


class Untraceable(GapNet):
    """Data-dependent control flow: torch.fx cannot trace it, hooks must be used."""

    def forward(self, x):
        h = self.features(x)
        if h.sum() > -1:  # always true, but fx cannot know
            h = h * 1.0
        return self.fc(torch.flatten(self.pool(h), 1))


class TwoInputNet(nn.Module):
    """An image and a second input (a question), fused by an element-wise product like the VQA model."""

    def __init__(self, channels: int = 10, vocabulary: int = 7):
        super().__init__()
        self.features = stem(channels)
        self.image_fc = nn.Linear(channels, 16)
        self.embed = nn.Embedding(vocabulary, 16)
        self.classifier = nn.Sequential(nn.Tanh(), nn.Linear(16, CLASSES))

    def forward(self, image, question):
        picture = self.image_fc(self.features(image).mean((2, 3)))
        return self.classifier(picture * torch.tanh(self.embed(question).mean(1)))


def images(batch: int = 3, seed: int = 0) -> torch.Tensor:
    """A reproducible batch of 16x16 RGB images."""
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def seeded(model_class, seed: int = 0, **kwargs) -> nn.Module:
    """A model with reproducible random weights, in eval mode."""
    torch.manual_seed(seed)
    return model_class(**kwargs).eval()
