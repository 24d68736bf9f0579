"""fastai's Adam, stepped by torch's fused kernel: the same update, about five times cheaper.

fastai's `Optimizer.step` walks every parameter in Python through five callbacks (weight decay,
two averages, a step count, the Adam step): on a 2-core CPU that is ~0.1 s per batch for
VGG16-BN's 20M weights, a sixth of a CamVid epoch at 64 px crops, and what made fastseg's epochs
slower than a bare loop's (benchmarks/README.md, "Learning on real photos"). `FusedAdam` keeps
everything the trainer relies on from fastai's `Optimizer` (hyper-parameter groups that one-cycle
schedules, discriminative learning rates, `freeze`, BatchNorm and bias excluded from weight decay
through `do_wd`, the state saved in checkpoints under fastai's names) and replaces only `step`
with `torch.optim.adam.adam(..., fused=True)`: one kernel per group over all its tensors.

The arithmetic is Adam's, as fastai's `adam_step` and torch's both write it (bias-corrected
averages, eps added outside the square root, decoupled weight decay `p *= 1 - lr * wd` or L2
`grad += wd * p`); results agree with fastai's `Adam` to float rounding
(tests/test_optimizer.py). A checkpoint written with fastai's `Adam` (an integer `step`) resumes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from fastai.optimizer import Optimizer
from torch.optim.adam import adam

# Devices whose fused Adam kernel torch ships; elsewhere the multi-tensor (foreach) path.
FUSED_DEVICES = ("cpu", "cuda", "mps")


class FusedAdam(Optimizer):
    """fastai's `Adam(params, lr, mom, sqr_mom, eps, wd, decouple_wd)`, with torch's fused step."""

    def __init__(self, params: Iterable, lr: float | slice, mom: float = 0.9, sqr_mom: float = 0.99,
                 eps: float = 1e-5, wd: float = 0.01, decouple_wd: bool = True):  # fmt: skip
        super().__init__(params, [], lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd)
        self.decouple_wd = decouple_wd

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        if closure is not None:
            raise NotImplementedError("fastai optimizers do not support a closure")
        batches: dict[tuple[int, bool, torch.device], list[torch.Tensor]] = {}
        hypers = {}
        for parameter, _, state, hyper in self.all_params(with_grad=True):
            key = (id(hyper), bool(state.get("do_wd", True)), parameter.device)
            batches.setdefault(key, []).append(parameter)
            hypers[key[0]] = hyper
        for (hyper_id, decays, device), parameters in batches.items():
            self._step(parameters, hypers[hyper_id], decays, device)

    def _step(self, parameters: list[torch.Tensor], hyper: dict, decays: bool, device: torch.device) -> None:
        """One fused Adam update of `parameters`, which share their hyper-parameters and `do_wd`."""
        grad_avgs, sqr_avgs, steps = [], [], []
        for parameter in parameters:
            state = self.state[parameter]
            if "grad_avg" not in state:
                state["grad_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                state["sqr_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
            step = state.get("step", 0)
            if not isinstance(step, torch.Tensor):  # fastai's Adam counts in a Python int
                step = torch.tensor(float(step), dtype=torch.float32, device=parameter.device)
            state["step"] = step
            grad_avgs.append(state["grad_avg"])
            sqr_avgs.append(state["sqr_avg"])
            steps.append(step)
        wd = float(hyper["wd"]) if decays else 0.0
        fused = device.type in FUSED_DEVICES
        adam(parameters, [parameter.grad for parameter in parameters], grad_avgs, sqr_avgs, [], steps,
             foreach=None if fused else True, fused=fused or None, amsgrad=False, maximize=False,
             lr=float(hyper["lr"]), beta1=float(hyper["mom"]), beta2=float(hyper["sqr_mom"]),
             weight_decay=wd, eps=float(hyper["eps"]), decoupled_weight_decay=self.decouple_wd)  # fmt: skip
