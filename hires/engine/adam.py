"""Adam for the one tensor a tile optimises, step for step torch.optim.Adam's own arithmetic.

torch.optim's optimisers import torch._dynamo the first time one is made (its methods are wrapped
to keep the compiler out): 2 s of every process that renders on a 2-core EPYC, as long as the
whole of a small render, and paid again by each Dask worker and each test that runs the command
line.  L-BFGS (its line search) stays torch's; Adam is a few lines, written here as torch writes it
for a CPU tensor (``_single_tensor_adam``: no weight decay, no amsgrad), so a render's pixels are
the same with either (tests/test_losses.py compares them over many steps).
"""
from __future__ import annotations

import torch


class Adam:
    """Adam on ``x`` (its ``.grad`` filled by the caller's backward), with torch's defaults."""

    def __init__(self, x: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.x, self.lr, self.betas, self.eps = x, lr, betas, eps
        self.exp_avg = torch.zeros_like(x, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(x, memory_format=torch.preserve_format)
        self.steps = 0

    def zero_grad(self, set_to_none: bool = False) -> None:
        """The gradient zeroed in place (its buffer kept: see Engine.optimise)."""
        if set_to_none:
            self.x.grad = None
        elif self.x.grad is not None:
            self.x.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        grad = self.x.grad
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(self.steps)  # (torch keeps the count as a float tensor and reads it back)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        denom = (self.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        self.x.addcdiv_(self.exp_avg, denom, value=-(self.lr / bias_correction1))
