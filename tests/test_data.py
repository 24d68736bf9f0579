import numpy as np
import torch

from fastseg.data.split import seed_split
from fastseg.data.voc import find_voc
from fastseg.imaging.geometry import fit_image
from fastseg.imaging.images import load_rgb
from fastseg.imaging.masks import VOID_LABEL, read_mask
from fastseg.imaging.normalise import IMAGENET_MEAN, IMAGENET_STD
from fastseg.training.config import AugmentConfig
from fastseg.training.data import build_dataloaders
from fastseg.training.samples import save_dataset_samples

NO_AUGMENT = AugmentConfig(
    flip_p=0, rotate_p=0, translate_p=0, scale_p=0, blur_p=0, color_jitter_p=0, brightness_contrast_p=0
)


def loaders(voc_root, augment=None, size=48, crop_size=None):
    folder = find_voc(voc_root)
    split = seed_split(folder.ids("train"), folder.ids("val"))
    dls = build_dataloaders(
        folder,
        split.train,
        split.valid,
        size=size,
        batch_size=4,
        augment=augment,
        num_workers=0,
        device="cpu",
        seed=0,
        crop_size=crop_size,
    )
    return folder, split, dls


def test_batches_have_expected_types_shapes_and_labels(voc_root):
    _, _, dls = loaders(voc_root)
    images, masks = dls.one_batch()
    assert images.shape == (4, 3, 48, 48) and images.dtype == torch.float32
    assert masks.shape == (4, 48, 48) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= set(range(21)) | {VOID_LABEL}
    assert abs(images.mean().item()) < 1.5  # normalised, not 0..255


def test_validation_is_resized_not_augmented(voc_root):
    """Validation batches equal a plain nearest resize of the palette mask: no augmentation."""
    from PIL import Image

    folder, split, dls = loaders(voc_root)
    _, masks = dls.valid.one_batch()
    first = read_mask(folder.mask_path(split.valid[0]))
    expected = np.array(Image.fromarray(first).resize((48, 48), Image.NEAREST))
    np.testing.assert_array_equal(masks[0].numpy(), expected)


def test_palette_classes_reach_the_batch(voc_root):
    """Labels in the batch are the PNG's palette indices (e.g. 15 person), never grey levels."""
    folder, split, dls = loaders(voc_root, augment=NO_AUGMENT)
    in_files = set()
    for image_id in split.valid:
        in_files |= set(np.unique(read_mask(folder.mask_path(image_id))).tolist())
    in_batches = set()
    for _, masks in dls.valid:
        in_batches |= set(masks.unique().tolist())
    assert in_batches == in_files


def test_normalisation_uses_imagenet_statistics(voc_root):
    """The first validation image equals its picture, squished to 48² as predict fits it, scaled
    to 0..1 and normalised with ImageNet's mean and std, computed here by hand: a pipeline without
    normalisation (or with other statistics) fails, which a range check alone would not see."""
    folder, split, dls = loaders(voc_root, augment=NO_AUGMENT)
    images, _ = dls.valid.one_batch()
    picture = fit_image(load_rgb(folder.image_path(split.valid[0])), 48, "squish")
    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(images[0], (pixels - mean) / std, atol=1e-5, rtol=0)
    assert not torch.allclose(images[0], pixels, atol=0.1)  # the check above can tell them apart


def test_sample_figures_are_written(voc_root, tmp_path):
    _, _, dls = loaders(voc_root)
    paths = save_dataset_samples(dls, tmp_path, rows=2)
    assert [p.name for p in paths] == ["train_ds_sample.png", "val_ds_sample.png"]
    assert all(p.stat().st_size > 5_000 for p in paths)


def test_random_scale_crops_are_square_labels_and_void_padded(voc_root):
    """Zoomed out (longer side 0.3-0.4 x 48 px) into 32 px crops, images are smaller than the
    crop: what they leave is void."""
    zoom_out = AugmentConfig(**{**vars(NO_AUGMENT), "random_scale_crop": True, "crop_scale": (0.3, 0.4)})
    folder, split, dls = loaders(voc_root, augment=zoom_out, size=48, crop_size=32)
    images, masks = dls.one_batch()
    assert images.shape == (4, 3, 32, 32) and masks.shape == (4, 32, 32)
    assert set(masks.unique().tolist()) <= set(range(21)) | {VOID_LABEL}
    assert (masks == VOID_LABEL).float().mean() > 0.6  # at most 20x20 of the 32x32 is image


def test_crop_trained_validation_is_letterboxed(voc_root):
    """With random-scale crops, each validation mask is the whole mask, longer side scaled to SIZE
    by nearest, aspect kept, padded with void at the bottom and right; the image padding is the
    mean colour, 0 once normalised. (torch's nearest-exact and Pillow's NEAREST round a few
    pixel centres differently, so the image area is compared to 99%.)"""
    from PIL import Image

    crops = AugmentConfig(**{**vars(NO_AUGMENT), "random_scale_crop": True})
    folder, split, dls = loaders(voc_root, augment=crops, size=48, crop_size=32)
    images, masks = dls.valid.one_batch()
    assert images.shape == (4, 3, 48, 48) and masks.shape == (4, 48, 48)
    for row, image_id in enumerate(split.valid[:4]):
        mask = read_mask(folder.mask_path(image_id))
        scale = 48 / max(mask.shape)
        height, width = round(mask.shape[0] * scale), round(mask.shape[1] * scale)
        resized = np.array(Image.fromarray(mask).resize((width, height), Image.NEAREST))
        got = masks[row].numpy()
        assert (got[height:, :] == VOID_LABEL).all() and (got[:, width:] == VOID_LABEL).all()
        assert (got[:height, :width] == resized).mean() > 0.99
        padding = torch.cat([images[row, :, height:, :].flatten(), images[row, :, :, width:].flatten()])
        assert padding.numel() > 0 and padding.abs().max() < 0.02


def test_training_batches_really_are_augmented(voc_root):
    """Through fastai's pipeline (not just `augment_pair`): flip p=1 mirrors every training mask,
    and validation is left alone."""
    from PIL import Image

    flip_only = AugmentConfig(**{**vars(NO_AUGMENT), "flip_p": 1.0})
    folder, split, _ = loaders(voc_root)
    dls = build_dataloaders(folder, split.train, split.train, size=48, batch_size=len(split.train),
                            augment=flip_only, num_workers=0, device="cpu", seed=0)  # fmt: skip
    squished = {
        image_id: np.array(
            Image.fromarray(read_mask(folder.mask_path(image_id))).resize((48, 48), Image.NEAREST)
        )
        for image_id in split.train
    }
    _, train_masks = dls.train.one_batch()
    mirrored = {mask[:, ::-1].tobytes() for mask in squished.values()}
    assert all(mask.numpy().astype(np.uint8).tobytes() in mirrored for mask in train_masks)
    _, valid_masks = dls.valid.one_batch()
    assert [m.numpy().astype(np.uint8).tobytes() for m in valid_masks] == [
        squished[i].tobytes() for i in split.train
    ]
