"""Pose prediction on arbitrary image files with a trained checkpoint: the logic behind predict.py.

image file -> square person box (given, or the whole image) -> the same crop and normalisation as the
datasets' test-time pipeline -> G (flip-averaged) -> joints in original px -> ``<name>.json`` + ``<name>.png``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from config import Config
from datasets import DATASETS
from datasets.base import eval_crop, read_image
from datasets.skeleton import JointSpec
from inference.predict import heatmaps_to_original, predict_heatmaps
from inference.weights import load_generator
from runtime.device import autocast_dtype, place_images, precision_name
from utils.drawing import YELLOW, draw_pose
from utils.errors import UserInputError
from utils.io import write_json

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def joint_spec_for(ckpt: dict, path: str) -> tuple[str, JointSpec]:
    """(dataset name, JointSpec) of a checkpoint: its ``dataset`` entry, checked against the model's joint count."""
    joints = ckpt["model_args"]["num_joints"]
    name = ckpt.get("dataset")
    if name not in DATASETS:  # older or foreign file: the one dataset family with this joint count, if any
        same = [n for n, cls in DATASETS.items() if cls.spec.num_joints == joints]
        if not same:
            raise UserInputError(f"--checkpoint {path}: no dataset has {joints} joints (checkpoint dataset: {name!r})")
        name = same[0]
    spec = DATASETS[name].spec
    if spec.num_joints != joints:
        raise UserInputError(f"--checkpoint {path}: model predicts {joints} joints but its dataset '{name}' has "
                             f"{spec.num_joints}")
    return name, spec


def box_from_xywh(x: float, y: float, w: float, h: float) -> tuple[np.ndarray, float]:
    """(centre in pixel-centre coordinates, side) of the square crop for box ``x y w h``.

    The box is in pixel-edge units: the whole image of W x H px is ``0 0 W H``. The crop is the square of
    side max(w, h) around the box centre, as the datasets' person boxes are squares.
    """
    if not (w > 0 and h > 0):
        raise UserInputError(f"--bbox: width and height must be positive, got {w} x {h}")
    return np.array([x + w / 2 - 0.5, y + h / 2 - 0.5]), float(max(w, h))


def list_images(path: str) -> list[str]:
    """``path`` itself, or the image files of directory ``path`` (sorted)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path)
                       if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, n)))
        if not files:
            raise UserInputError(f"--image: no image files ({', '.join(IMAGE_EXTENSIONS)}) in directory {path}")
        return files
    if not os.path.exists(path):
        raise UserInputError(f"--image: not found: {path}")
    return [path]


@dataclass
class Predictor:
    """A generator rebuilt from a checkpoint alone, with what its test-time pipeline needs."""

    generator: torch.nn.Module
    cfg: Config
    dataset: str
    spec: JointSpec
    device: torch.device
    flip: bool = True

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "auto", flip: bool = True, amp: str | None = None,
                        trust: bool = False) -> Predictor:
        """Load ``path`` (a checkpoint, an export or a run directory) onto ``device``; ``amp`` overrides its
        precision."""
        loaded = load_generator(path, device, amp, trust)
        dataset, spec = joint_spec_for(loaded.ckpt, path)
        return cls(loaded.generator, loaded.cfg, dataset, spec, loaded.device, flip)

    def describe(self) -> str:
        """One line: where and in which precision G runs, and whether predictions are flip-averaged."""
        precision = precision_name(autocast_dtype(self.cfg.amp, self.device), self.device)
        return f"device {self.device} | {precision} | flip test {'on' if self.flip else 'off'}"

    @torch.no_grad()
    def predict(self, image_rgb: np.ndarray, center: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
        """Joints (J, 2) in original px and their heatmap peak scores (J,) for the person in the square box."""
        cfg = self.cfg
        image, affine = eval_crop(image_rgb, center, side, cfg.input_res, cfg.mean, cfg.std)
        images = place_images(image[None], self.device, cfg.channels_last)
        flip_perm = self.spec.flip_permutation() if self.flip else None
        heatmaps = predict_heatmaps(self.generator, images, flip_perm, self.device,
                                    autocast_dtype(cfg.amp, self.device))
        coords, scores = heatmaps_to_original(heatmaps, affine[None], cfg.input_res)
        return coords[0], scores[0]


def _output_names(paths: list[str]) -> list[str]:
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    return [s if stems.count(s) == 1 else os.path.basename(p).replace(".", "_") for s, p in zip(stems, paths,
                                                                                                  strict=True)]


def draw_prediction(image_rgb: np.ndarray, coords: np.ndarray, spec: JointSpec, box: tuple) -> np.ndarray:
    """BGR picture: the image with the predicted skeleton (yellow) and the person box (grey)."""
    picture = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    x, y, w, h = box
    radius = max(2, round(max(picture.shape[:2]) / 120))
    cv2.rectangle(picture, (round(x), round(y)), (round(x + w) - 1, round(y + h) - 1), (160, 160, 160), 1)
    return draw_pose(picture, coords, spec.limbs, YELLOW, radius=radius)


def predict_files(predictor: Predictor, image: str, outdir: str, bbox: tuple | None = None) -> list[dict]:
    """Predict every image of ``image`` (file or directory); write ``<name>.json`` and ``<name>.png`` into outdir."""
    paths = list_images(image)
    records = []
    for path, name in zip(paths, _output_names(paths), strict=True):
        rgb = read_image(path)
        height, width = rgb.shape[:2]
        box = tuple(float(v) for v in bbox) if bbox is not None else (0.0, 0.0, float(width), float(height))
        center, side = box_from_xywh(*box)
        coords, scores = predictor.predict(rgb, center, side)
        record = {
            "image": path, "width": width, "height": height, "box_xywh": list(box),
            "dataset": predictor.dataset,
            "joints": [{"name": n, "x": float(x), "y": float(y), "score": float(s)}
                       for n, (x, y), s in zip(predictor.spec.names, coords, scores, strict=True)],
        }
        record["json"] = os.path.join(outdir, f"{name}.json")
        record["png"] = os.path.join(outdir, f"{name}.png")
        write_json(record["json"], {k: v for k, v in record.items() if k not in ("json", "png")})
        if not cv2.imwrite(record["png"], draw_prediction(rgb, coords, predictor.spec, box)):
            raise UserInputError(f"--output: cannot write {record['png']}")
        records.append(record)
    return records
