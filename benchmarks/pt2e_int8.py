"""torch's own x86 INT8 path (PT2E static quantisation, X86InductorQuantizer, compiled by
inductor) against fastseg's runtimes and smp's best forward, in alternating rounds in one process
(issue #24 asked for it as an alternative to onnxruntime's INT8: measured, not a default).

Untrained weights (speed does not depend on them), calibrated on `--calibration` random batches;
the compile's own time is reported apart. Agreement with fp32 is reported as the share of equal
argmax labels on the calibration-like inputs: untrained logits are near ties everywhere, so it
is a lower bound, not an accuracy figure (`fastseg export --int8` measures that on real data).
Needs torchao (`pip install torchao`), which fastseg itself does not depend on.

    python benchmarks/pt2e_int8.py [--size 224] [--batch 4] [--rounds 3] [--seconds 3] [--calibration 8]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from peer_ratios import (  # noqa: E402 - scripts beside this one
    best_rates,
    cpu_description,
    default_typed_options,
    exported_models,
    make_jpegs,
    smp_forwards,
)


def pt2e_int8(model: torch.nn.Module, size: int, batch: int, calibration: int) -> torch.nn.Module:
    """`model` (BatchNorm folded, eval) quantised by PT2E for x86 and compiled by inductor, whose
    freezing pass folds the quantised weights (needed for its INT8 kernels)."""
    import torch._inductor.config as inductor_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    inductor_config.freezing = True
    example = (torch.randn(batch, 3, size, size),)
    exported = torch.export.export(model, example).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for _ in range(calibration):
            prepared(torch.randn(batch, 3, size, size))
    return torch.compile(convert_pt2e(prepared))


def main() -> None:
    args = default_typed_options(__doc__, size=224, batch=4, rounds=3, seconds=3.0, calibration=8)
    from fastseg.inference.runtime import open_model, open_onnx

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model_pth, _, int8_file = exported_models(scratch, make_jpegs(scratch / "jpegs", 16), args.size)
        torch_runtime = open_model(model_pth, cpu).runtime  # folded, channels_last, native bf16
        fp32 = open_model(model_pth, cpu, precision="fp32").runtime
        onnx_int8 = open_onnx(int8_file)[1]
        started = time.perf_counter()
        quantised = pt2e_int8(fp32.model.to(memory_format=torch.contiguous_format), args.size, args.batch,
                              args.calibration)  # fmt: skip
        images = torch.randn(args.batch, 3, args.size, args.size)
        with torch.no_grad():
            labels_int8 = quantised(images).argmax(1)
        compile_seconds = time.perf_counter() - started
        labels_fp32 = fp32.logits(images).argmax(1)

        def pt2e(batch: torch.Tensor) -> object:
            with torch.no_grad():
                return quantised(batch)

        forwards = {
            **smp_forwards(),
            "fastseg torch": torch_runtime.logits,
            "fastseg onnxruntime int8": onnx_int8.logits,
            "fastseg torch pt2e int8": pt2e,
        }
        rates = best_rates(forwards, args.size, args.batch, args.rounds, args.seconds)
    smp_best = max(rate for name, rate in rates.items() if name.startswith("smp"))
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "size": args.size,
        "batch": args.batch,
        "pt2e_quantise_and_compile_seconds": round(compile_seconds, 1),
        "pt2e_labels_equal_to_fp32": round((labels_int8 == labels_fp32).float().mean().item(), 4),
        "forward_images_per_s": rates,
        "ratio_to_best_smp": {name: round(rate / smp_best, 2) for name, rate in rates.items()},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
