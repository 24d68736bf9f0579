"""Paired augmentation: image and mask move together, masks stay labels, exposed area is void."""

import numpy as np
import pytest
import torch

from fastseg.imaging.geometry import IMAGE_FILL
from fastseg.imaging.masks import VOID_LABEL
from fastseg.training.augment import augment_pair, build_augment
from fastseg.training.config import AugmentConfig

# Colour of each label in the synthetic image: the colour predicts the label exactly.
PALETTE = {0: (0, 0, 0), 7: (0, 255, 0), 15: (255, 0, 0), 12: (0, 0, 255)}
ALL_OFF = {
    "flip_p": 0, "rotate_p": 0, "translate_p": 0, "scale_p": 0,
    "blur_p": 0, "color_jitter_p": 0, "brightness_contrast_p": 0,
}  # fmt: skip


def labelled_pair(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    mask = np.zeros((size, size), np.uint8)
    mask[8:30, 6:40] = 15
    mask[34:60, 20:50] = 7
    mask[4:20, 44:60] = 12
    image = np.zeros((size, size, 3), np.uint8)
    for label, colour in PALETTE.items():
        image[mask == label] = colour
    return torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(mask)


def spatial_only(**overrides) -> AugmentConfig:
    values = {**ALL_OFF, **overrides}
    return AugmentConfig(**values)


@pytest.mark.parametrize(
    "config",
    [
        spatial_only(flip_p=1.0),
        spatial_only(rotate_p=1.0),
        spatial_only(translate_p=1.0),
        spatial_only(scale_p=1.0),
        AugmentConfig(
            flip_p=1,
            rotate_p=1,
            translate_p=1,
            scale_p=1,
            blur_p=1,
            color_jitter_p=1,
            brightness_contrast_p=1,
        ),
    ],
    ids=["flip", "rotate", "translate", "scale", "everything"],
)
def test_mask_stays_labels_and_aligned_with_image(config):
    augment = build_augment(config)
    image, mask = labelled_pair()
    for seed in range(5):
        torch.manual_seed(seed)
        image_out, mask_out = augment_pair(augment, image, mask)
        assert image_out.shape == image.shape and mask_out.shape == mask.shape
        assert set(mask_out.unique().tolist()) <= set(PALETTE) | {VOID_LABEL}
        if config.color_jitter_p or config.blur_p:
            continue  # colours are changed on purpose; labels checked above
        pixels = image_out.permute(1, 2, 0).numpy().astype(int)
        labels = mask_out.numpy()
        for label, colour in PALETTE.items():
            where = labels == label
            if where.sum() < 20:
                continue
            # Bilinear image vs nearest mask differ only along edges: the bulk must agree.
            agree = (np.abs(pixels[where] - colour).sum(1) < 60).mean()
            assert agree > 0.85, f"label {label}: only {agree:.0%} of its pixels have its colour"


def test_exposed_area_is_void_in_mask_and_fill_in_image():
    augment = build_augment(spatial_only(translate_p=1.0, translate_fraction=0.4))
    image, mask = labelled_pair()
    torch.manual_seed(0)
    image_out, mask_out = augment_pair(augment, image, mask)
    exposed = mask_out == VOID_LABEL
    assert exposed.float().mean() > 0.02, "translation by up to 40% should expose a border"
    assert not (mask == VOID_LABEL).any()
    fill = torch.tensor(IMAGE_FILL, dtype=torch.uint8)
    assert (image_out.permute(1, 2, 0)[exposed] == fill).all(1).float().mean() > 0.95


def test_zoom_out_exposes_void_not_background():
    augment = build_augment(spatial_only(scale_p=1.0, scale_range=(0.5, 0.6)))
    image, mask = labelled_pair()
    _, mask_out = augment_pair(augment, image, mask)
    assert mask_out[0, 0] == VOID_LABEL and mask_out[-1, -1] == VOID_LABEL


def test_colour_transforms_leave_mask_untouched():
    colour_only = {**ALL_OFF, "blur_p": 1, "color_jitter_p": 1, "brightness_contrast_p": 1}
    augment = build_augment(AugmentConfig(**colour_only))
    image, mask = labelled_pair()
    torch.manual_seed(3)
    image_out, mask_out = augment_pair(augment, image, mask)
    assert torch.equal(mask_out, mask)
    assert not torch.equal(image_out, image)


def test_all_probabilities_zero_is_identity():
    augment = build_augment(spatial_only())
    image, mask = labelled_pair()
    image_out, mask_out = augment_pair(augment, image, mask)
    assert torch.equal(image_out, image) and torch.equal(mask_out, mask)
