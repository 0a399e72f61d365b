"""The procedural dataset: determinism, split streams, annotation invariants, left/right convention, pipeline."""

import dataclasses

import numpy as np
import pytest
import torch

from datasets.synthetic import SyntheticDataset, head_box_sizes, render_scene
from utils.errors import UserInputError

PIPE = {"input_res": 64, "output_res": 16, "sigma": 1.0, "mean": (0.5,) * 3, "std": (0.25,) * 3,
        "augmentation": None, "seed": 0}
R_SHOULDER, L_SHOULDER, HEAD_TOP = 12, 13, 9


def make(split: str = "val", size: int = 200, seed: int = 0, canvas: int = 128) -> SyntheticDataset:
    return SyntheticDataset(split=split, size=size, base_seed=seed, canvas=canvas, box_margin=1.3, **PIPE)


@pytest.fixture(scope="module")
def val() -> SyntheticDataset:
    return make()


def test_same_seed_gives_identical_annotations_and_images():
    a, b = make(size=12), make(size=12)
    for field in ("joints", "annotated", "visible", "centers", "box_sizes", "ref_lengths"):
        np.testing.assert_array_equal(getattr(a.ann, field), getattr(b.ann, field))
    assert a.ann.image_names == b.ann.image_names and a.ann.image_names[3] == "synthetic/val/00003"
    for i in (0, 5, 11):
        assert a.load_image(i).tobytes() == b.load_image(i).tobytes()
    # a scene does not depend on how many scenes come before or after it in the split
    np.testing.assert_array_equal(make(size=3).ann.joints, a.ann.joints[:3])


def test_splits_are_different_streams_and_valid_aliases_val():
    joints = {s: make(s, size=5).ann.joints for s in ("train", "val", "test")}
    assert not np.allclose(joints["train"], joints["val"]) and not np.allclose(joints["val"], joints["test"])
    np.testing.assert_array_equal(make("valid", size=5).ann.joints, joints["val"])
    assert not np.allclose(make(size=5, seed=1).ann.joints, joints["val"])


def test_invalid_split_raises_one_line_user_error():
    with pytest.raises(UserInputError, match="valid: train, val") as err:
        make("training", size=1)
    assert "\n" not in str(err.value)


def test_annotation_shapes_and_invariants(val):
    ann, n, canvas = val.ann, len(val), val.canvas
    assert n == 200 and ann.joints.shape == (n, 16, 2) and ann.joints.dtype == np.float64
    assert ann.annotated.shape == ann.visible.shape == (n, 16) and ann.annotated.dtype == bool
    assert ann.centers.shape == (n, 2) and ann.box_sizes.shape == ann.ref_lengths.shape == (n,)
    assert len(ann.image_names) == n
    inside = ((ann.joints >= 0) & (ann.joints <= canvas - 1)).all(-1)
    np.testing.assert_array_equal(ann.annotated, inside)  # annotated exactly where the joint is on the canvas
    assert ann.annotated.mean() > 0.98
    assert not (ann.visible & ~ann.annotated).any()  # visible is a subset of annotated
    assert np.isfinite(ann.ref_lengths).all() and (ann.ref_lengths > 0).all()
    # the person box covers the annotated joints
    half = ann.box_sizes[:, None] / 2
    lo, hi = ann.centers[:, None] - half[..., None], ann.centers[:, None] + half[..., None]
    assert ((ann.joints >= lo) & (ann.joints <= hi) | ~ann.annotated[..., None]).all()


def test_occluded_fraction_is_plausible(val):
    ann = val.ann
    frac = (ann.annotated & ~ann.visible).sum() / ann.annotated.sum()
    assert 0.06 < frac < 0.2
    # occluders cover some joints only: never (nearly) the whole figure in most images
    assert np.mean(ann.visible.sum(1) >= 8) > 0.9


def test_head_top_lies_in_the_head_box_and_the_reference_is_head_sized(val):
    for scene, ref in zip(val.scenes, val.ann.ref_lengths, strict=True):
        cx, cy = scene.head[:2]
        w, h = head_box_sizes(scene.head)
        x, y = scene.joints[HEAD_TOP]
        assert abs(x - cx) <= w / 2 and abs(y - cy) <= h / 2
        assert ref == pytest.approx(0.6 * np.hypot(w, h))
        # PCKh reference is a head size: a small fraction of the figure, far from zero
        extent = np.ptp(scene.joints, axis=0).max()
        assert 0.05 * extent < ref < 0.6 * extent


def test_head_is_drawn_where_the_head_box_is():
    ds = make(size=20, canvas=256)
    for i, scene in enumerate(ds.scenes):
        if not ds.ann.annotated[i, HEAD_TOP]:
            continue
        # only the torso and head, nothing in front: arms, occluders and strokes may legitimately cover the face
        bare = dataclasses.replace(scene, order=(8,), occluders=[], n_front=0)
        img = render_scene(bare, ds.canvas).astype(int)
        cx, cy, a, _, angle = scene.head
        # between the eyes and the mouth: skin on a face, hair on the back of a head
        along = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])  # neck -> head top
        x, y = (round(v) for v in np.array([cx, cy]) - 0.25 * a * along)
        colour = scene.palette[2] if scene.facing_front else scene.palette[3]
        assert np.abs(img[y, x] - colour).max() <= scene.noise + 3


def test_left_right_follow_the_facing_direction(val):
    """Front view: the figure's right shoulder is on the image's left; back view: on the image's right."""
    upright = [s for s in val.scenes if abs(s.rotation) < 25]
    front = [s for s in upright if s.facing_front]
    back = [s for s in upright if not s.facing_front]
    assert len(front) > 3 * len(back) > 0  # front_prob 0.8
    assert np.mean([s.joints[R_SHOULDER, 0] < s.joints[L_SHOULDER, 0] for s in front]) > 0.95
    assert np.mean([s.joints[R_SHOULDER, 0] > s.joints[L_SHOULDER, 0] for s in back]) > 0.95


def test_render_is_pure_and_rgb_uint8(val):
    img = render_scene(val.scenes[7], 128)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert img.tobytes() == render_scene(val.scenes[7], 128).tobytes()
    assert img.std() > 10  # a cluttered picture, not a flat fill


def test_getitem_returns_the_pipeline_sample(val):
    sample = val[0]
    assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
    assert sample["heatmaps"].shape == sample["occlusion"].shape == (16, 16, 16)
    assert sample["joints"].shape == (16, 2) and sample["visible"].shape == sample["annotated"].shape == (16,)
    assert sample["index"] == 0 and sample["ref_length"] == pytest.approx(val.ann.ref_lengths[0])
    peaks = sample["heatmaps"].amax(dim=(1, 2))
    assert (peaks[sample["annotated"] > 0] > 0.5).all()
