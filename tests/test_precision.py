"""`--precision auto` follows the CPU, and the suite does not (issue #26): both branches of the
capability check are exercised on any machine by patching it, so no test depends on which CPU
CI happens to run on."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from fastseg.data.voc import VOC
from fastseg.inference import precision
from fastseg.inference.precision import autocast_dtype, cpu_supports_bf16
from fastseg.model.checkpoint import save_model
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: avx2 avx512f amx_tile amx_bf16 amx_int8\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        (AVX2_ONLY, False),
        (AVX512_BF16, True),
        (SAPPHIRE_RAPIDS, True),
        ("", False),
        ("model name\t: avx512_bf16 lookalike\nflags\t\t: avx2\n", False),
    ],  # fmt: skip
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert cpu_supports_bf16(cpuinfo) is native


@pytest.mark.parametrize("native", [False, True])
def test_auto_is_bf16_exactly_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda cpuinfo=None: native)
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if native else None)
    assert autocast_dtype(cpu, "fp32") is None  # asked for: whatever the CPU
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype(cpu, "int4")


@pytest.fixture(scope="module")
def model_and_image(tmp_path_factory):
    """A random model whose BatchNorm statistics make its logits close enough for bf16 to flip
    some labels, and one photo-sized random image."""
    folder = tmp_path_factory.mktemp("precision")
    torch.manual_seed(0)
    config = ModelConfig(num_classes=21)
    network = SegmentationModel(config).eval()
    path = save_model(folder / "model.pth", network, config, 64, classes=VOC)
    image = folder / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (75, 100, 3), np.uint8)).save(image)
    return path, image


def labels(model_and_image, out, *options):
    path, image = model_and_image
    result = CliRunner().invoke(main, ["predict", "--model", str(path), str(image), "--out", str(out),
                                       "--quiet", "--num-workers", "0", *options])  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(out / "a.png") as mask:
        return np.array(mask)


@pytest.mark.parametrize("native", [False, True])
def test_predict_auto_runs_what_the_cpu_check_chose(model_and_image, tmp_path, monkeypatch, native):
    """`auto` writes exactly the masks of the precision it stands for on this kind of CPU."""
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda cpuinfo=None: native)
    auto = labels(model_and_image, tmp_path / "auto")
    pinned = labels(model_and_image, tmp_path / "pinned", "--precision", "bf16" if native else "fp32")
    assert np.array_equal(auto, pinned)


def test_bf16_runs_in_bf16_and_stays_close_to_fp32():
    """What `auto` buys and costs on a bf16 CPU: the forward really runs in bf16 (its logits are
    not fp32's), within bf16's 8-bit mantissa of them. Exactness tests therefore pin fp32; the
    share of labels that differ on real photos is in benchmarks/README.md."""
    from fastseg.inference.runtime import TorchRuntime

    torch.manual_seed(0)
    network = SegmentationModel(ModelConfig(num_classes=5)).eval()
    images = torch.randn(2, 3, 64, 64)
    fp32 = TorchRuntime(network, torch.device("cpu"), "fp32").logits(images)
    bf16 = TorchRuntime(network, torch.device("cpu"), "bf16").logits(images)
    assert fp32.dtype == bf16.dtype == torch.float32  # handed on as fp32 either way
    relative = ((bf16 - fp32).abs().max() / fp32.abs().max()).item()
    assert 0 < relative < 0.05
