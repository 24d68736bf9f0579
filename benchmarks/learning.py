"""Learning quality on real photos: fastseg against a bare smp loop, same data, budget and scorer.

Both learners train from scratch on the data set's `train` split with the same input geometry
(longer side scaled to SIZE x U(0.5, 2), CROP² crops padded with void, flips), the same epochs,
batch size and peak learning rate, on the same CPU threads, one after the other. Both are then
scored by `score` below: each image letterboxed into SIZE², the logits of the image area upsampled
to the image's own resolution, argmax, one confusion matrix per learner with void left out.
Scores are over the whole `val` split and over its held-out half (the half fastseg's own split
keeps for testing: neither learner ever looked at it).

The peer is the strongest simple loop we could write, after torchvision's segmentation
references: smp `Unet("vgg16_bn")`, AdamW (torch's defaults, wd 1e-2) and `OneCycleLR`,
cross-entropy ignoring void, final weights, no validation.

    python benchmarks/learning.py --data ../shared/data/camvid-dev --seeds 0 1 2 \
        --learners peer fast --out benchmarks/results/learning.json

A learner is `peer` (`peer-fused`: the same loop with AdamW's fused step, the peer at its
fastest, for wall-clock), or a fastseg variant from `VARIANTS` (recipe overrides); fastseg variants
are scored three ways from one run: the weights `model.pth` holds, the final epoch's, and the
mean of the last three epochs' weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from peer_ratios import cpu_description  # beside this script

from fastseg.data.dataset import SegmentationData
from fastseg.data.factory import open_dataset
from fastseg.imaging.geometry import LETTERBOX, content_size, fit_image
from fastseg.imaging.images import load_rgb
from fastseg.imaging.masks import VOID_LABEL
from fastseg.imaging.normalise import normalise
from fastseg.metrics import ConfusionMatrix

# fastseg variants: overrides of the `fast` recipe, one change at a time for the ablation. The
# kept weights need no variant: every run is scored with its kept, final and last-3-mean weights.
VARIANTS: dict[str, dict[str, Any]] = {
    "fast": {},
    "fast-no-extra-augment": {"rotate_p": 0.0, "blur_p": 0.0, "color_jitter_p": 0.0,
                              "brightness_contrast_p": 0.0},  # fmt: skip
    "fast-one-lr": {"encoder_lr_ratio": 1.0},
    "fast-no-wd": {"weight_decay": 0.0},
    # the peer's wall-clock: fastseg's 12 epochs took 1.19x the peer's (365 s vs 307 s, seed 2, idle)
    "fast-10-epochs": {"epochs": 10},
    # with FusedAdam fastseg's 12 epochs took 297 s against the peer's 272 s (seed 2, idle): 11 is
    # the peer's wall-clock
    "fast-11-epochs": {"epochs": 11},
    # BatchNorm at small batches: twice the batch (and so half the steps) at the same lr
    "fast-batch-16": {"batch_size": 16},
}
# the encoder x loss table (#20 part 3): one change to the `fast` recipe each, from scratch
ENCODERS = ("resnet18", "resnet34", "mobilenetv3_large_100", "efficientnet_b0", "convnext_tiny",
            "regnety_004")  # fmt: skip
VARIANTS.update({f"encoder-{name}": {"encoder": name} for name in ENCODERS})
VARIANTS.update({f"loss-{name}": {"loss": name} for name in ("dice", "focal", "lovasz", "ce+dice")})


# Changes no recipe field spells: each swaps one thing in `fastseg.training.learner` for the run
# (as `decoder_cost.py --ablation` does). The variant's name must also be in `VARIANTS`.
ABLATIONS: dict[str, dict[str, Any]] = {}


def ablation(name: str) -> Callable[[], dict[str, Any]]:
    def register(make: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        VARIANTS[name], ABLATIONS[name] = {}, {"make": make}
        return make

    return register


@ablation("fast-no-full-resolution-skip")
def _no_full_resolution_skip() -> dict[str, Any]:
    """The last decoder block without the 64-channel 1/1 encoder map (32 -> 16, as smp's Unet)."""
    from decoder_cost import NoFullResolutionSkip  # beside this script

    return {"SegmentationModel": NoFullResolutionSkip}


@ablation("fast-wd-on-bn-bias")
def _weight_decay_on_batchnorm_and_bias() -> dict[str, Any]:
    """fastai's Learner leaves BatchNorm weights and every bias out of weight decay
    (`wd_bn_bias=False`); the peer's AdamW decays all of them."""
    from fastai.learner import Learner

    return {"Learner": partial(Learner, wd_bn_bias=True)}


class CrossEntropyOverAllPixels(torch.nn.Module):
    """Cross-entropy summed over labelled pixels and divided by all pixels, void included: a batch
    with more void weighs less (fastseg and the peer both take the mean over labelled pixels)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.as_subclass(torch.Tensor).long()
        summed = F.cross_entropy(logits.as_subclass(torch.Tensor).float(), target,
                                 ignore_index=VOID_LABEL, reduction="sum")  # fmt: skip
        return summed / target.numel()


@ablation("fast-loss-over-all-pixels")
def _loss_over_all_pixels() -> dict[str, Any]:
    return {"build_loss": lambda *args, **kwargs: CrossEntropyOverAllPixels()}


@contextlib.contextmanager
def swapped(variant: str) -> Iterator[dict[str, Any]]:
    """The variant's replacements in `fastseg.training.learner`, put back afterwards."""
    import fastseg.training.learner as learner_module

    replacements = ABLATIONS[variant]["make"]() if variant in ABLATIONS else {}
    originals = {name: getattr(learner_module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(learner_module, name, value)
    try:
        yield replacements
    finally:
        for name, value in originals.items():
            setattr(learner_module, name, value)


PEERS = ("peer", "peer-fused")  # the bare loop, with torch's default AdamW step or its fused one

# --- the one scorer -------------------------------------------------------------------------


@torch.inference_mode()
def score(model: torch.nn.Module, data: SegmentationData, ids: list[str], size: int,
          padding: str = "mean") -> dict[str, float]:  # fmt: skip
    """mIoU and pixel accuracy at full resolution: letterbox, upsample the image area, argmax.

    `padding`: "mean", the letterbox of fastseg's inference (mean colour, as training's crops
    pad); "edge", the image's border pixels repeated instead (the letterbox-padding ablation)."""
    model.eval()
    matrix = ConfusionMatrix(len(data.classes))
    for image_id in ids:
        image = load_rgb(data.image_path(image_id))
        height, width = content_size(image.height, image.width, size, LETTERBOX)
        if padding == "mean":
            pixels = normalise(fit_image(image, size, LETTERBOX))
        else:
            pixels = normalise(image.resize((width, height), resample=2))  # bilinear, as fit_image
            pixels = F.pad(pixels[None], (0, size - width, 0, size - height), mode="replicate")[0]
        logits = model(pixels[None])[:, :, :height, :width]
        logits = F.interpolate(logits.float(), size=(image.height, image.width), mode="bilinear",
                               align_corners=False)  # fmt: skip
        matrix.update(logits.argmax(1)[0], torch.from_numpy(data.read_mask(image_id).astype(np.int64)))
    scores = matrix.scores()
    return {"miou": round(float(scores.mean_iou), 4),
            "pixel_accuracy": round(float(scores.pixel_accuracy), 4)}  # fmt: skip


# --- the peer: a bare loop -------------------------------------------------------------------


class PeerPairs(torch.utils.data.Dataset):
    """Random-scale crops with flips, as torchvision's references: longer side SIZE x U(0.5, 2),
    padded with void (mean colour in the image) to CROP, a random CROP² crop, a coin-flip mirror."""

    def __init__(self, data: SegmentationData, ids: list[str], size: int, crop: int):
        self.data, self.ids, self.size, self.crop = data, ids, size, crop

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_id = self.ids[index]
        image = load_rgb(self.data.image_path(image_id))
        mask = torch.from_numpy(self.data.read_mask(image_id).astype(np.int64))
        longer = max(1, round(self.size * random.uniform(0.5, 2.0)))
        height, width = content_size(image.height, image.width, longer, LETTERBOX)
        pixels = normalise(image.resize((width, height), resample=2))  # bilinear
        mask = F.interpolate(mask[None, None].float(), size=(height, width), mode="nearest-exact")
        mask = mask[0, 0].long()
        pad_h, pad_w = max(0, self.crop - height), max(0, self.crop - width)
        pixels = F.pad(pixels, (0, pad_w, 0, pad_h), value=0.0)
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=VOID_LABEL)
        top = random.randint(0, pixels.shape[1] - self.crop)
        left = random.randint(0, pixels.shape[2] - self.crop)
        pixels = pixels[:, top : top + self.crop, left : left + self.crop]
        mask = mask[top : top + self.crop, left : left + self.crop]
        if random.random() < 0.5:
            pixels, mask = pixels.flip(-1), mask.flip(-1)
        return pixels, mask


def train_peer(data: SegmentationData, train_ids: list[str], args: argparse.Namespace,
               seed: int, fused: bool = False) -> torch.nn.Module:  # fmt: skip
    import segmentation_models_pytorch as smp

    random.seed(seed)
    torch.manual_seed(seed)
    model = smp.Unet("vgg16_bn", encoder_weights=None, classes=len(data.classes))
    pairs = PeerPairs(data, train_ids, args.size, args.crop)
    loader = torch.utils.data.DataLoader(pairs, batch_size=args.batch, shuffle=True, drop_last=True)
    # fused: the same update in one kernel, the peer at its fastest (`peer-fused`)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=fused or None)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                                   steps_per_epoch=len(loader))  # fmt: skip
    for _ in range(args.epochs):
        model.train()
        for images, masks in loader:
            loss = F.cross_entropy(model(images), masks, ignore_index=VOID_LABEL)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model


# --- fastseg ---------------------------------------------------------------------------------


class LastEpochs(Callback):
    """Keeps copies of the weights after each of the last `count` epochs (before any reload)."""

    order = 100

    def __init__(self, count: int, total: int):
        self.count, self.total, self.states = count, total, []

    def after_epoch(self) -> None:
        if self.learn.epoch >= self.total - self.count:
            self.states.append({k: v.detach().clone() for k, v in self.learn.model.state_dict().items()})


def averaged(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of float tensors (weights and BatchNorm statistics); counters from the last state."""
    return {key: torch.stack([s[key] for s in states]).mean(0) if value.is_floating_point() else value
            for key, value in states[-1].items()}  # fmt: skip


def train_fastseg(variant: str, args: argparse.Namespace, seed: int, work: Path) -> tuple[dict, float, Path]:
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel
    from fastseg.training.recipes import recipe
    from fastseg.training.trainer import train

    run_dir = work / f"{variant}-{seed}"
    options = dict(data=str(args.data), out=str(run_dir), size=args.size, crop_size=args.crop,
                   epochs=args.epochs, batch_size=args.batch, lr=args.lr, pretrained=False, num_workers=0,
                   train_set="train", seed=seed)  # fmt: skip
    config = recipe("fast", **{**options, **VARIANTS[variant]})  # the variant's values win
    last = LastEpochs(3, config.epochs)
    with swapped(variant) as replacements:
        start = time.perf_counter()
        train(config, run_dir, show_progress=False, callbacks=[last])
        seconds = time.perf_counter() - start
    data = open_dataset(args.data)
    split = json.loads((run_dir / "split.json").read_text())
    saved = torch.load(run_dir / "model.pth", weights_only=True)
    network = replacements.get("SegmentationModel", SegmentationModel)  # the architecture trained
    results = {}
    for name, state in (("kept", saved["state_dict"]), ("final", last.states[-1]),
                        ("last3", averaged(last.states))):  # fmt: skip
        model = network(ModelConfig.from_dict(saved["model_config"]))
        model.load_state_dict(state)
        started = time.perf_counter()
        results[name] = scored(model, data, split, args.size)
        results[name]["images_per_second"] = round(
            (len(split["valid"]) + 2 * len(split["test"])) / (time.perf_counter() - started), 2)
    # letterbox padding at inference: the same final weights, the image's border pixels repeated
    # into the padding instead of the mean colour that training's crops and the letterbox use
    results["final-edge-padding"] = scored(model, data, split, args.size, padding="edge")
    results["parameters"] = sum(tensor.numel() for tensor in model.parameters())
    return results, seconds, run_dir


def scored(model: torch.nn.Module, data: SegmentationData, split: dict, size: int,
           padding: str = "mean") -> dict[str, Any]:  # fmt: skip
    everything = sorted(split["valid"] + split["test"])
    heldout = sorted(split["test"])
    return {"val": score(model, data, everything, size, padding),
            "heldout": score(model, data, heldout, size, padding)}  # fmt: skip


def validation_scale(run_dirs: list[Path], data_root: Path, size: int) -> dict[str, Any]:
    """How training's validation scores compare with the test's way: each kept run's last epoch
    as `history.csv` logged it (the validation half letterboxed into SIZE², masks fitted by
    nearest neighbour, fastai's metric) against the same weights on the same half at full
    resolution (`score`). Folders are named `VARIANT-SEED` by `train_fastseg`."""
    from fastseg.model.config import ModelConfig
    from fastseg.model.network import SegmentationModel
    from fastseg.runs.folder import RunFolder

    data = open_dataset(data_root)
    rows = []
    for run_dir in run_dirs:
        variant = run_dir.name.rsplit("-", 1)[0]
        with swapped(variant) as replacements:
            network = replacements.get("SegmentationModel", SegmentationModel)
        saved = torch.load(run_dir / "model.pth", weights_only=True)
        model = network(ModelConfig.from_dict(saved["model_config"]))
        model.load_state_dict(saved["state_dict"])
        split = json.loads((run_dir / "split.json").read_text())
        logged = float(RunFolder(run_dir).read_history()["valid_miou"].iloc[-1])  # one reader of it
        full = score(model, data, sorted(split["valid"]), size)["miou"]
        rows.append({"run": run_dir.name, "input_scale": round(logged, 4), "full_resolution": full})
        print(json.dumps(rows[-1]), flush=True)
    logged = np.array([row["input_scale"] for row in rows])
    full = np.array([row["full_resolution"] for row in rows])
    ranks = [np.argsort(np.argsort(values)) for values in (logged, full)]
    return {"runs": rows, "mean_difference": round(float((full - logged).mean()), 4),
            "sd_difference": round(float((full - logged).std(ddof=1)), 4) if len(rows) > 1 else 0.0,
            "pearson": round(float(np.corrcoef(logged, full)[0, 1]), 3) if len(rows) > 2 else None,
            "spearman": round(float(np.corrcoef(*ranks)[0, 1]), 3) if len(rows) > 2 else None}  # fmt: skip


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--learners", nargs="+", default=["peer", "fast"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep-runs", type=Path, help="keep fastseg's run folders here")
    parser.add_argument("--validation-scale", nargs="+", type=Path, metavar="RUN",
                        help="no training: kept runs' logged validation against full resolution")  # fmt: skip
    args = parser.parse_args()
    if args.validation_scale:
        result = validation_scale(args.validation_scale, args.data, args.size)
        report = {"cpu": cpu_description(), "validation_scale": result}
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print({key: value for key, value in result.items() if key != "runs"})
        return
    unknown = [name for name in args.learners if name not in PEERS and name not in VARIANTS]
    if unknown:
        sys.exit(f"unknown learner(s) {unknown}; choose one of {', '.join([*PEERS, *VARIANTS])}")

    data = open_dataset(args.data)
    split = data.split(None, 42)  # the split fastseg makes: val halved into validation and test
    split_dict = {"train": list(split.train), "valid": list(split.valid), "test": list(split.test)}
    report: dict[str, Any] = {
        "cpu": cpu_description(),
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "data": str(args.data),
        "budget": {k: getattr(args, k) for k in ("size", "crop", "epochs", "batch", "lr")},
        "runs": [],
    }  # fmt: skip
    if args.out.exists():
        report["runs"] = json.loads(args.out.read_text()).get("runs", [])
    work = args.keep_runs or Path(tempfile.mkdtemp(prefix="fastseg-learning-"))
    for seed in args.seeds:
        for learner in args.learners:
            print(f"{learner} seed {seed} ...", flush=True)
            if learner in PEERS:
                start = time.perf_counter()
                model = train_peer(data, list(split.train), args, seed, fused=learner == "peer-fused")
                seconds = time.perf_counter() - start
                results = {"final": scored(model, data, split_dict, args.size)}
            else:
                results, seconds, _ = train_fastseg(learner, args, seed, work)
            row = {"learner": learner, "seed": seed, "seconds": round(seconds, 1), "scores": results,
                   "budget": report["budget"]}  # fmt: skip
            print(json.dumps(row), flush=True)
            report["runs"].append(row)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
    table(report)


def table(report: dict[str, Any]) -> None:
    """mean ± sd over seeds, per learner and kept weights, val and held-out half."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in report["runs"]:
        for weights, result in row["scores"].items():
            if not isinstance(result, dict):  # "parameters"
                continue
            groups.setdefault((row["learner"], weights), []).append({**result, "seconds": row["seconds"]})
    print(f"{'learner':<30} {'weights':<6} {'n':>2} {'val mIoU':>15} {'held-out mIoU':>15} {'seconds':>8}")
    for (learner, weights), rows in sorted(groups.items()):
        val = summary([r["val"]["miou"] for r in rows])
        held = summary([r["heldout"]["miou"] for r in rows])
        seconds = statistics.mean(r["seconds"] for r in rows)
        print(f"{learner:<30} {weights:<6} {len(rows):>2} {val['mean']:.3f} ± {val['sd']:.3f}  "
              f"{held['mean']:.3f} ± {held['sd']:.3f} {seconds:8.0f}")  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    main()
