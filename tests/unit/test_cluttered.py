"""Cluttered Fashion-MNIST: canvas i shows source item i whole at a drawn place among crops of
other items, is a function of (seed, i) only, and the registered entry loads as balanced
splits of 48x48 grey canvases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from twins_nas.errors import ConfigError
from twins_nas.search.proxy import data as data_mod
from twins_nas.search.proxy.cluttered import CANVAS_SIZE, ClutteredCanvases, scale_items
from twins_nas.search.proxy.data import load_proxy_data
from twins_nas.search.proxy.datasets import get_dataset
from twins_nas.search.proxy.settings import ProxySettings

HAVE_FMNIST = (data_mod.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()
N_ITEMS = 12
SHADES = 20 + 15 * np.arange(N_ITEMS)  # item j is a solid 28x28 square of grey SHADES[j] (all distinct, > 0)
LABELS = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])


def solid_items() -> np.ndarray:
    return (SHADES[:, None, None] * np.ones((1, 28, 28))).astype(np.uint8)


def textured_items(n: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=(n, 28, 28), dtype=np.uint8)


def test_a_canvas_depends_only_on_the_seed_and_its_index():
    items = textured_items()
    labels = np.arange(30) % 10
    a = ClutteredCanvases(items, labels, seed=7)
    together = a.images(np.array([3, 11, 29]))
    # alone, in another order, in another batch, from another object with the same seed
    assert np.array_equal(a.images(np.array([11]))[0], together[1])
    assert np.array_equal(ClutteredCanvases(items, labels, seed=7).images(np.array([29, 0, 3]))[2], together[0])
    assert np.array_equal(a.images(np.array([29])), together[2:])
    other = ClutteredCanvases(items, labels, seed=8).images(np.array([3, 11, 29]))
    assert all(not np.array_equal(other[n], together[n]) for n in range(3))
    assert not np.array_equal(together[0], together[1])
    assert together.dtype == np.uint8 and together.shape == (3, CANVAS_SIZE, CANVAS_SIZE)


def test_without_distractors_the_target_is_whole_at_its_recorded_place_and_nothing_else():
    items = textured_items(n=40)  # no zero pixel: the item's extent is exactly the nonzero pixels
    labels = np.arange(40) % 10
    canvases = ClutteredCanvases(items, labels, seed=1, canvas_size=40, num_distractors=0)
    idx = np.arange(40)
    images, lay = canvases.images(idx), canvases.layout(idx)
    for i in idx:
        y, x = lay.target_yx[i]
        assert np.array_equal(images[i, y:y + 28, x:x + 28], items[i])
        assert np.count_nonzero(images[i]) == 28 * 28
    assert np.array_equal(canvases.labels, labels)
    # positions are drawn over every place that keeps the item whole: 0..12 on a 40 px canvas
    assert lay.target_yx.min() == 0 and lay.target_yx.max() == 40 - 28
    assert len(set(map(tuple, lay.target_yx))) > 30


def test_distractor_pixels_come_from_other_items_only():
    k = 6
    canvases = ClutteredCanvases(solid_items(), LABELS, seed=2, num_distractors=k, distractor_size=8)
    idx = np.arange(N_ITEMS)
    images, lay = canvases.images(idx), canvases.layout(idx)
    assert np.array_equal(canvases.labels[idx], LABELS)
    seen_distractors = 0
    for i in idx:
        img = images[i]
        y, x = lay.target_yx[i]
        in_target = np.zeros(img.shape, bool)
        in_target[y:y + 28, x:x + 28] = True
        covered = np.zeros(img.shape, bool)
        for py, px in lay.paste_yx[i]:
            covered[py:py + 8, px:px + 8] = True
        assert set(lay.distractor_items[i]) <= set(idx) - {i}
        # the target's square shows its own shade, or a brighter (other) item's over it
        inside = img[in_target]
        assert (inside >= SHADES[i]).all() and set(np.unique(inside)) <= {SHADES[i], *SHADES[SHADES > SHADES[i]]}
        # outside it: black, except under the pasted crops, which show shades of non-target items
        outside = img[~in_target]
        assert (outside[~covered[~in_target]] == 0).all()
        shown = set(np.unique(img[covered & ~in_target]).tolist())
        assert shown <= set(SHADES[np.arange(N_ITEMS) != i].tolist())
        assert len(shown) <= k
        seen_distractors += len(shown)
    assert seen_distractors > N_ITEMS  # the distractors are there (most crops lie off the target)


def test_a_distractor_is_a_crop_of_its_item_composed_with_the_maximum():
    items = textured_items(n=25, seed=4)
    canvases = ClutteredCanvases(items, np.zeros(25, int), seed=5, canvas_size=48, num_distractors=1,
                                 distractor_size=6)
    idx = np.arange(25)
    images, lay = canvases.images(idx), canvases.layout(idx)
    for i in idx:
        expected = np.zeros((48, 48), np.uint8)
        y, x = lay.target_yx[i]
        expected[y:y + 28, x:x + 28] = items[i]
        (j,), ((cy, cx),), ((py, px),) = lay.distractor_items[i], lay.crop_yx[i], lay.paste_yx[i]
        assert j != i and 0 <= cy <= 28 - 6 and 0 <= cx <= 28 - 6 and 0 <= py <= 48 - 6 and 0 <= px <= 48 - 6
        expected[py:py + 6, px:px + 6] = np.maximum(expected[py:py + 6, px:px + 6], items[j, cy:cy + 6, cx:cx + 6])
        assert np.array_equal(images[i], expected)


def test_scaled_items_are_area_averages():
    # 2x2 blocks of constant value: halving the side gives exactly the block values
    blocks = np.random.default_rng(3).integers(0, 256, size=(5, 14, 14)).astype(np.uint8)
    items = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)
    assert np.array_equal(scale_items(items, 14), blocks)
    assert scale_items(items, 28) is items
    canvases = ClutteredCanvases(solid_items(), LABELS, seed=0, canvas_size=32, item_size=14, num_distractors=0)
    img, (y, x) = canvases.images(np.array([4]))[0], canvases.layout(np.array([4])).target_yx[0]
    assert (img[y:y + 14, x:x + 14] == SHADES[4]).all() and np.count_nonzero(img) == 14 * 14


@pytest.mark.parametrize("kwargs,needle", [
    (dict(item_size=70), "item_size=70"),
    (dict(distractor_size=30), "distractor_size=30"),
    (dict(num_distractors=-1), "num_distractors=-1"),
])
def test_impossible_parameters_are_one_line_errors(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        ClutteredCanvases(solid_items(), LABELS, **kwargs)


def test_the_registry_entry_describes_48px_grey_canvases_of_10_classes():
    info = get_dataset("cluttered-fashion-mnist")
    assert (info.num_classes, info.in_chans, info.image_size) == (10, 1, (48, 48))
    assert "Fashion-MNIST" in info.source and "MIT" in info.source
    assert ProxySettings(dataset="cluttered-fashion-mnist").dataset == "cluttered-fashion-mnist"


@pytest.mark.skipif(not HAVE_FMNIST, reason="Debian package dataset-fashion-mnist not installed")
def test_real_canvases_load_balanced_and_show_their_fashion_mnist_item():
    settings = ProxySettings(dataset="cluttered-fashion-mnist", train_samples=50, val_samples=30, batch_size=10,
                             resolution=48)
    d = load_proxy_data(settings, seed=0)
    assert d.train_x.shape == (50, 1, 48, 48) and d.val_x.shape == (30, 1, 48, 48) and d.num_classes == 10
    assert torch.bincount(d.train_y, minlength=10).tolist() == [5] * 10
    assert torch.bincount(d.val_y, minlength=10).tolist() == [3] * 10

    request = data_mod.load_request("cluttered-fashion-mnist", None, 48)
    source = get_dataset("fashion-mnist").load(request)
    canvases = get_dataset("cluttered-fashion-mnist").load(request)
    assert np.array_equal(canvases.labels, source.labels)
    for i in (0, 12345, 59999):
        item, canvas = source.images(np.array([i]))[0], canvases.images(np.array([i]))[0]
        windows = np.lib.stride_tricks.sliding_window_view(canvas, (28, 28))  # every place of a whole item
        covers = (windows >= item).all(axis=(2, 3)) & ((windows == item).mean(axis=(2, 3)) > 0.5)
        assert covers.any()
