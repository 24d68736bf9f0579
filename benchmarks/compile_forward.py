"""fastseg's forward pass eager against `torch.compile` (inductor, CPU) at predict's setting, in
alternating rounds in one process (issue #24: measured, not a default).

The network as predict runs it (BatchNorm folded, channels_last, autocast at `--precision auto`:
bf16 on a CPU with native bf16), batch 4 at 224²; the compile's own time is reported apart (a
repeated run would reuse inductor's cache on disk).

    python benchmarks/compile_forward.py [--size 224] [--batch 4] [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from peer_ratios import best_rates, cpu_description, default_typed_options  # noqa: E402 - a script beside this one


def main() -> None:
    args = default_typed_options(__doc__, size=224, batch=4, rounds=3, seconds=3.0)
    from fastseg.data.voc import VOC
    from fastseg.inference.runtime import TorchRuntime
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    eager = TorchRuntime(SegmentationModel(ModelConfig(num_classes=len(VOC))).eval(), cpu)
    compiled = TorchRuntime(SegmentationModel(ModelConfig(num_classes=len(VOC))).eval(), cpu)
    compiled.model.load_state_dict(eager.model.state_dict())
    compiled.model = torch.compile(compiled.model)
    images = torch.randn(args.batch, 3, args.size, args.size)
    started = time.perf_counter()
    with torch.inference_mode():
        same = (compiled.logits(images) - eager.logits(images)).abs().max().item()
    compile_seconds = time.perf_counter() - started
    rates = best_rates({"fastseg torch eager": eager.logits, "fastseg torch.compile": compiled.logits},
                       args.size, args.batch, args.rounds, args.seconds)  # fmt: skip
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "autocast": str(eager.dtype),
        "size": args.size,
        "batch": args.batch,
        "compile_seconds": round(compile_seconds, 1),
        "max_logit_difference": same,
        "forward_images_per_s": rates,
        "ratio": round(rates["fastseg torch.compile"] / rates["fastseg torch eager"], 3),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
