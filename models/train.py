"""One brief, deterministic PyTorch training loop shared by every zoo architecture."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from serveoff.models.spec import Dataset, TrainingPlan


def train(module: nn.Module, data: Dataset, plan: TrainingPlan, seed: int) -> nn.Module:
    """Train ``module`` with Adam and cross-entropy for ``plan.steps`` steps, then put it in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(module.parameters(), lr=plan.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for _ in range(plan.steps):
        pick = rng.integers(0, len(data.x_train), size=plan.batch_size)
        x = torch.from_numpy(data.x_train[pick])
        y = torch.from_numpy(data.y_train[pick])
        optimiser.zero_grad()
        loss_fn(module(x), y).backward()
        optimiser.step()
    return module.eval()
