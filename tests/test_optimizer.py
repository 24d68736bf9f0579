"""FusedAdam: fastai's Adam update (decoupled or L2 weight decay, BatchNorm/bias exempt, groups
with their own rates, a one-cycle-like schedule of lr and beta1) by torch's fused kernel."""

from __future__ import annotations

import io

import pytest
import torch
from fastai.optimizer import Adam

from fastseg.training.optimizer import FusedAdam


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)
    )


def groups(model: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """Two groups, as fastseg's encoder/decoder splitter gives."""
    return [list(model[:2].parameters()), list(model[2:].parameters())]


def exempt_batchnorm_and_bias(optimizer, model: torch.nn.Module) -> None:
    """What fastai's Learner does with wd_bn_bias=False: do_wd False in the state."""
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if isinstance(module, torch.nn.BatchNorm2d) or name == "bias":
                optimizer.state[parameter]["do_wd"] = False


def saved(optimizer) -> dict:
    """The state as fastseg's checkpoints hold it: plain lists and dicts (no fastcore `L`)."""
    state = optimizer.state_dict()
    return {"state": list(state["state"]), "hypers": [dict(hyper) for hyper in state["hypers"]]}


def trained(make, decouple_wd: bool, steps: int = 6, state: dict | None = None):
    model = small_model()
    optimizer = make(groups(model), lr=1e-2, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.1, decouple_wd=decouple_wd)
    exempt_batchnorm_and_bias(optimizer, model)
    if state is not None:
        optimizer.load_state_dict(state)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        # the one-cycle scheduler sets per-group lr and beta1 before every batch
        optimizer.set_hyper("lr", [1e-3 * (step + 1), 1e-2 / (step + 1)])
        optimizer.set_hyper("mom", 0.95 - 0.02 * step)
        images = torch.randn(2, 3, 10, 10, generator=generator)
        loss = model(images).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("decouple_wd", [True, False])
def test_fused_adam_makes_fastais_adam_update(decouple_wd):
    expected, _ = trained(Adam, decouple_wd)
    got, _ = trained(FusedAdam, decouple_wd)
    for (name, want), have in zip(expected.state_dict().items(), got.state_dict().values(), strict=True):
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-6, msg=name)


def test_weight_decay_spares_batchnorm_and_bias_and_follows_the_switch():
    """With the gradient zero, Adam moves nothing: only weight decay changes weights."""
    model = small_model()
    before = {name: value.clone() for name, value in model.named_parameters()}
    optimizer = FusedAdam(groups(model), lr=0.1, wd=0.5, decouple_wd=True)
    exempt_batchnorm_and_bias(optimizer, model)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for name, parameter in model.named_parameters():
        if name.startswith("1.") or name.endswith("bias"):
            torch.testing.assert_close(parameter, before[name], msg=name)
        else:
            torch.testing.assert_close(parameter, before[name] * (1 - 0.1 * 0.5), msg=name)


def test_a_frozen_group_does_not_move():
    model = small_model()
    optimizer = FusedAdam(groups(model), lr=0.1)
    optimizer.freeze()  # fastai: the first group stops requiring grad
    before = [parameter.clone() for parameter in model[:2].parameters()]
    model(torch.randn(2, 3, 10, 10)).sum().backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model[:2].parameters(), strict=True))
    assert not torch.equal(model[3].weight, small_model()[3].weight)


def test_a_checkpoint_of_fastais_adam_resumes_where_it_stopped():
    """Runs checkpointed before FusedAdam hold fastai's state (an int `step`): resuming them with
    FusedAdam continues the same trajectory as fastai's Adam would."""
    _, fastai_optimizer = trained(Adam, True, steps=3)
    buffer = io.BytesIO()
    torch.save(saved(fastai_optimizer), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert isinstance(state["state"][0]["step"], int)
    # same starting weights both ways: resume the 3-step fastai run for 3 more steps
    continued_fastai, _ = trained(Adam, True, steps=3, state=fastai_optimizer.state_dict())
    continued_fused, fused = trained(FusedAdam, True, steps=3, state=state)
    expected, got = continued_fastai.state_dict().values(), continued_fused.state_dict().values()
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-6)
    assert {float(s["step"]) for s in fused.state_dict()["state"] if "step" in s} == {6.0}


def test_its_state_saves_and_loads_weights_only_bit_for_bit():
    _, optimizer = trained(FusedAdam, True, steps=2)
    buffer = io.BytesIO()
    torch.save(saved(optimizer), buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    for kept, original in zip(loaded["state"], optimizer.state_dict()["state"], strict=True):
        assert kept.keys() == original.keys()
        for key, value in original.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(kept[key], value), key
            else:
                assert kept[key] == value, key


def test_beta2_of_one_is_refused_before_training():
    """beta2 = 1: the squared-gradient average never moves from zero and Adam's bias correction
    divides by 1 - 1**step = 0. fastai's Adam raised ZeroDivisionError mid-training; the fused
    step would have written NaN weights silently. Refused up front, on the command line and in a
    config file alike."""
    from click.testing import CliRunner

    from cli.main import main
    from fastseg.errors import FastsegError
    from fastseg.training.recipes import recipe

    with pytest.raises(FastsegError, match=r"beta2 1\.0: out of range, expected from 0 to below 1\.0"):
        recipe("fast", beta2=1.0)
    assert recipe("fast", beta2=0.9999).beta2 == 0.9999
    result = CliRunner().invoke(main, ["train", "--data", ".", "--beta2", "1"])
    assert result.exit_code == 2 and "--beta2" in result.output and "Traceback" not in result.output
