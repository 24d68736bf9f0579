"""What only a CUDA machine can show: mixed precision (bf16 and fp16 with loss scaling),
channels_last, `torch.compile`, pinned-memory loading, SyncBatchNorm in a one-process group, and
`fastseg predict` on the GPU agreeing with the CPU. Skipped here without CUDA;
`benchmarks/gpu_check.sh` runs them on a lent GPU.

Tolerances: bf16 keeps 8 bits of mantissa, fp16 11; a random model's logits differ from fp32 by
a few 1e-2 in bf16, so outputs are compared by relative error and label agreement, not exactly.
TF32 is switched off for the fp32 references, so "fp32" means fp32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (gpu_check.sh)")

from fastseg.data.voc import VOC  # noqa: E402
from fastseg.model.config import ModelConfig  # noqa: E402
from fastseg.model.network import SegmentationModel  # noqa: E402

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_fp32():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def model_and_batch(batch: int = 4, size: int = 64, classes: int = 21):
    torch.manual_seed(0)
    model = SegmentationModel(ModelConfig(num_classes=classes)).to(CUDA)
    images = torch.randn(batch, 3, size, size, device=CUDA)
    target = torch.randint(0, classes, (batch, size, size), device=CUDA)
    target[:, :4] = 255
    return model, images, target


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference).norm() / reference.norm())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_amp_training_steps_learn_and_agree_with_fp32(dtype):
    """A few steps under autocast (fp16 with a GradScaler, as fastai's MixedPrecision does) bring
    the loss of a fixed batch down, with finite gradients; the first forward is within a few
    percent of fp32's."""
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model, images, target = model_and_batch()
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = model.eval()(images)
        with torch.autocast("cuda", dtype=dtype):
            mixed = model(images)
    assert mixed.dtype == dtype
    assert relative_error(mixed, reference) < 0.05
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    losses = []
    for _ in range(8):
        with torch.autocast("cuda", dtype=dtype):
            loss = F.cross_entropy(model(images).float(), target, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_channels_last_gives_the_same_logits_and_gradients():
    model, images, target = model_and_batch()
    contiguous = F.cross_entropy(model(images), target, ignore_index=255)
    contiguous.backward()
    gradient = model.head.weight.grad.clone()
    expected = model(images).detach()
    model.zero_grad()
    model = model.to(memory_format=torch.channels_last)
    last = images.contiguous(memory_format=torch.channels_last)
    logits = model(last)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    F.cross_entropy(logits, target, ignore_index=255).backward()
    torch.testing.assert_close(model.head.weight.grad, gradient, rtol=1e-3, atol=1e-5)


def test_compiled_model_matches_eager_and_trains():
    """`fastseg train --compile`'s torch.compile: the same logits as eager (fp32), and a step runs."""
    model, images, target = model_and_batch()
    model.eval()
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(images), model(images), rtol=1e-3, atol=1e-3)
    compiled.train()
    loss = F.cross_entropy(compiled(images), target, ignore_index=255)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_training_loader_pins_memory_and_lands_on_the_gpu(voc_root):
    """`build_dataloaders(device="cuda")` pins host batches (fast, asynchronous copies) and hands
    batches over on the GPU."""
    from fastseg.data.voc import find_voc
    from fastseg.training.data import build_dataloaders

    folder = find_voc(voc_root)
    ids = folder.ids("train")
    dls = build_dataloaders(folder, ids[:8], ids[8:12], size=64, batch_size=4, num_workers=0, device="cuda")
    assert dls.train.pin_memory
    images, masks = dls.one_batch()
    assert images.device.type == "cuda" and masks.device.type == "cuda"
    pinned = torch.zeros(4, 3, 64, 64).pin_memory()
    assert pinned.is_pinned()
    copy = pinned.to(CUDA, non_blocking=True)
    torch.cuda.synchronize()
    assert copy.sum().item() == 0


def test_syncbatchnorm_in_a_one_process_group_equals_batchnorm(tmp_path):
    """`fastseg train` under torchrun turns BatchNorm into SyncBatchNorm on CUDA; alone in an
    NCCL group it must normalise exactly as BatchNorm does (same outputs, same running stats)."""
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model, images, target = model_and_batch()
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(SegmentationModel(model.config).to(CUDA))
        synced.load_state_dict(model.state_dict())
        assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
        wrapped = DistributedDataParallel(synced, device_ids=[0])
        expected = model.train()(images)
        logits = wrapped.train()(images)
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
        F.cross_entropy(logits, target, ignore_index=255).backward()
        for plain, sync in zip(model.modules(), synced.modules(), strict=True):
            if isinstance(plain, nn.BatchNorm2d):
                torch.testing.assert_close(sync.running_mean, plain.running_mean, rtol=1e-4, atol=1e-5)
    finally:
        dist.destroy_process_group()


def test_predict_on_the_gpu_agrees_with_the_cpu(tmp_path):
    """`fastseg predict --device cuda` in fp32 gives the CPU's labels (bar float-rounding ties),
    whole-image and tiled; in bf16 it still writes every mask."""
    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main
    from fastseg.imaging.geometry import LETTERBOX
    from fastseg.model.checkpoint import save_model

    torch.manual_seed(0)
    network = SegmentationModel(ModelConfig(num_classes=len(VOC))).eval()
    model = save_model(
        tmp_path / "model.pth", network, ModelConfig(num_classes=len(VOC)), 64, resize=LETTERBOX, classes=VOC
    )
    picture = np.random.default_rng(0).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "a.png")

    def labels(*options):
        out = tmp_path / "-".join(options)
        arguments = ["--out", str(out), "--quiet", "--num-workers", "0", *options]
        result = CliRunner().invoke(
            main, ["predict", "--model", str(model), str(tmp_path / "a.png"), *arguments]
        )
        assert result.exit_code == 0, result.output
        with Image.open(out / "a.png") as mask:
            return np.array(mask)

    for tiles in ([], ["--tile", "64"]):
        cpu = labels("--device", "cpu", "--precision", "fp32", *tiles)
        gpu = labels("--device", "cuda", "--precision", "fp32", *tiles)
        assert (cpu == gpu).mean() > 0.999
    assert labels("--device", "cuda", "--precision", "bf16").shape == (150, 200)
