"""Predicting joints with G: on a batch of crops (shared with ``inference.evaluate`` and the benchmark), and on
arbitrary image and video files with a trained checkpoint (the logic behind predict.py).

crops -> G -> last-stack pose heatmaps (flip-averaged) -> argmax decode (heatmap px) -> input-crop px
      -> original px through the inverse crop affine.
image file or video frame -> square person box (given, or the whole image) -> the same crop and normalisation
as the datasets' test-time pipeline -> the above -> ``<name>.json`` + ``<name>.png`` per image, or
``<stem>.jsonl`` + ``<stem>.mp4`` per video.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from checkpoint import LOADED_FROM
from config import Config
from datasets import DATASETS
from datasets.base import eval_crop, read_image
from datasets.skeleton import JointSpec
from inference.weights import load_generator
from runtime.device import autocast, autocast_dtype, place_images, precision_name
from storage.io import NOT_FOUND, atomic_output, file_problem, json_safe, write_image, write_json
from utils.drawing import YELLOW, draw_pose
from utils.errors import UserInputError
from utils.geometry import apply_affine, heatmap_to_input, invert_affine
from utils.heatmaps import decode_heatmaps, flip_back

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
DEFAULT_FPS, MAX_FPS = 30.0, 1000.0  # a video whose container gives no usable frame rate is written at 30 fps
Box = tuple[float, float, float, float]  # x, y, w, h in original px, pixel-edge units (the whole image: 0 0 W H)
MAX_BOX_FACTOR = 10.0  # a box this many times the image's larger side shrinks the image below a tenth of the crop


def predict_heatmaps(generator: torch.nn.Module, images: torch.Tensor, flip_perm: list[int] | None,
                     device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    """Last-stack pose heatmaps (B, J, h, w), averaged with the mirrored image's when ``flip_perm`` is given."""
    with autocast(device, dtype):
        if flip_perm is None:
            return generator(images)["pose"][-1].float()
        both = generator(torch.cat([images, images.flip(-1)]))["pose"][-1].float()  # one pass for both views
    plain, mirrored = both.chunk(2)
    return (plain + flip_back(mirrored, flip_perm)) / 2


def heatmaps_to_original(heatmaps: torch.Tensor, affine: np.ndarray, input_res: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode (B, J, h, w) heatmaps and map them to original px with each sample's crop affine (B, 2, 3)."""
    coords, scores = decode_heatmaps(heatmaps)
    crop = heatmap_to_input(coords, input_res, heatmaps.shape[-1])
    return apply_affine(invert_affine(affine), crop), scores


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


def _show(box) -> str:
    try:
        return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"
    except (TypeError, ValueError):
        return repr(box)


def check_box(box, where: str, width: int | None = None, height: int | None = None) -> Box:
    """``box`` as four floats, after checking it: finite, positive width and height and, given the image size,
    overlapping the image and at most ``MAX_BOX_FACTOR`` times its larger side (a box outside the image or of
    absurd size gives joints far off the image or non-finite ones). ``where`` names the flag or file."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)):
        raise UserInputError(f"{where}: box {_show(box)} must be 4 finite numbers x y w h (original px)")
    x, y, w, h = values
    if not (w > 0 and h > 0):
        raise UserInputError(f"{where}: box {_show(box)}: width and height must be positive")
    if width is not None and height is not None:
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise UserInputError(f"{where}: box {_show(box)} does not overlap the {width}x{height} image "
                                 "(x y w h in original px, the whole image is 0 0 W H)")
        if max(w, h) > MAX_BOX_FACTOR * max(width, height):
            raise UserInputError(f"{where}: box {_show(box)} is more than {MAX_BOX_FACTOR:g}x the {width}x{height} "
                                 "image's larger side (expected a box around the person)")
    return values


def box_from_xywh(x: float, y: float, w: float, h: float) -> tuple[np.ndarray, float]:
    """(centre in pixel-centre coordinates, side) of the square crop for box ``x y w h``.

    The box is in pixel-edge units: the whole image of W x H px is ``0 0 W H``. The crop is the square of
    side max(w, h) around the box centre, as the datasets' person boxes are squares.
    """
    x, y, w, h = check_box((x, y, w, h), "--bbox")
    return np.array([x + w / 2 - 0.5, y + h / 2 - 0.5]), float(max(w, h))


@dataclass(frozen=True)
class Boxes:
    """Where each person box comes from: ``fixed`` (one --bbox for everything), ``by_name`` (--bboxes dict: image
    file name -> box), ``by_frame`` (--bboxes list: video frame -> box), or none of them: the whole image."""

    fixed: Box | None = None
    by_name: dict[str, Box] | None = None
    by_frame: list[Box] | None = None
    source: str = "--bbox"  # the flag (and file) for messages

    def for_image(self, path: str, width: int, height: int) -> Box:
        """The box of image file ``path``, checked against its size."""
        if self.by_frame is not None:
            raise UserInputError(f"{self.source}: a list gives one box per video frame; for images give a dict "
                                 "of file name -> [x, y, w, h]")
        if self.by_name is not None:
            name = os.path.basename(path)
            if name not in self.by_name:
                raise UserInputError(f"{self.source}: no box for image '{name}' (keys are file names)")
            return check_box(self.by_name[name], f"{self.source}: '{name}'", width, height)
        return self._fixed_or_whole(width, height, path)

    def check_video(self, job: Job) -> None:
        """Before any frame is read: a per-frame list shorter than the frames the video declares."""
        if self.by_frame is not None and job.frames is not None and len(self.by_frame) < job.frames:
            raise UserInputError(f"{self.source}: {len(self.by_frame)} boxes for the {job.frames} frames video "
                                 f"{job.source} declares; expected one [x, y, w, h] per frame")

    def for_frame(self, frame: int, width: int, height: int) -> Box:
        """The box of video frame ``frame`` (0-based), checked against the frame size."""
        if self.by_name is not None:
            raise UserInputError(f"{self.source}: a dict gives one box per image file; for a video give a list "
                                 "with one [x, y, w, h] per frame")
        if self.by_frame is not None:
            if frame >= len(self.by_frame):
                raise UserInputError(f"{self.source}: no box for frame {frame} (the list has {len(self.by_frame)})")
            return check_box(self.by_frame[frame], f"{self.source}: frame {frame}", width, height)
        return self._fixed_or_whole(width, height, f"frame {frame}")

    def _fixed_or_whole(self, width: int, height: int, what: str) -> Box:
        if self.fixed is None:
            return 0.0, 0.0, float(width), float(height)
        return check_box(self.fixed, f"{self.source} (for {what})", width, height)


def read_boxes(path: str) -> Boxes:
    """``--bboxes FILE.json``: a dict (image file name -> [x, y, w, h]) or a list (one [x, y, w, h] per video
    frame), original px; every box is checked for finite, positive values here and against its image later."""
    where = f"--bboxes {path}"
    try:
        with open(path) as f:
            value = json.load(f)
    except FileNotFoundError:
        raise UserInputError(f"--bboxes: file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"{where}: cannot read it as JSON ({err})") from None
    if isinstance(value, dict):
        return Boxes(by_name={str(k): check_box(v, f"{where}: '{k}'") for k, v in value.items()}, source=where)
    if isinstance(value, list):
        return Boxes(by_frame=[check_box(v, f"{where}: frame {i}") for i, v in enumerate(value)], source=where)
    raise UserInputError(f"{where}: expected a dict of image file name -> [x, y, w, h] or a list of [x, y, w, h] "
                         f"per video frame, got {type(value).__name__}")


def declared_frames(path: str) -> int | None:
    """The frame count the container of video ``path`` declares, or None when it gives no usable one."""
    capture = cv2.VideoCapture(path)
    try:
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT) if capture.isOpened() else float("nan")
    finally:
        capture.release()
    return int(count) if np.isfinite(count) and 0 < count < 1e9 else None


def is_video(path: str) -> bool:
    """A video by its extension, or a file of another extension that OpenCV cannot decode as an image but
    opens as a video."""
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_EXTENSIONS or ext in IMAGE_EXTENSIONS or not os.path.isfile(path):
        return ext in VIDEO_EXTENSIONS
    if cv2.imread(path, cv2.IMREAD_COLOR) is not None:
        return False
    capture = cv2.VideoCapture(path)
    try:
        return bool(capture.isOpened())
    finally:
        capture.release()


def list_images(path: str) -> list[str]:
    """``path`` itself, or the image files of directory ``path`` (sorted; any entry with an image extension
    that is not a folder, so that one which cannot be read is named when it is read, not passed over)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path)
                       if n.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(os.path.join(path, n)))
        if not files:
            raise UserInputError(f"--image: no image files ({', '.join(IMAGE_EXTENSIONS)}) in directory {path}")
        return files
    problem = file_problem(path)
    if problem == NOT_FOUND:
        raise UserInputError(f"--image: not found: {path}")
    if problem is not None:
        raise UserInputError(f"--image: {path} is {problem}; expected an image file, a folder of images or a video")
    return [path]


@dataclass(frozen=True)
class Job:
    """One input of predict.py and the two files predicting it writes: ``<name>.json`` and ``<name>.png`` for
    an image, ``<stem>.jsonl`` and ``<stem>.mp4`` for a video (with the frame count it declares)."""

    source: str
    outputs: tuple[str, str]
    video: bool = False
    frames: int | None = None


def plan_jobs(image: str, outdir: str) -> list[Job]:
    """What predicting ``image`` (a video, an image file or a folder of images) reads and writes into
    ``outdir``, known before the model is loaded or anything is written."""
    if os.path.isfile(image) and is_video(image):
        stem = os.path.splitext(os.path.basename(image))[0]
        outputs = (os.path.join(outdir, stem + ".jsonl"), os.path.join(outdir, stem + ".mp4"))
        return [Job(image, outputs, video=True, frames=declared_frames(image))]
    paths = list_images(image)
    return [Job(path, (os.path.join(outdir, f"{name}.json"), os.path.join(outdir, f"{name}.png")))
            for path, name in zip(paths, _output_names(paths), strict=True)]


@dataclass
class Predictor:
    """A generator rebuilt from a checkpoint alone, with what its test-time pipeline needs."""

    generator: torch.nn.Module
    cfg: Config
    dataset: str
    spec: JointSpec
    device: torch.device
    flip: bool = True
    source: str = ""  # the checkpoint file read (a run directory's newest complete one)

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "auto", flip: bool = True, amp: str | None = None,
                        trust: bool = False) -> Predictor:
        """Load ``path`` (a checkpoint, an export or a run directory) onto ``device``; ``amp`` overrides its
        precision."""
        loaded = load_generator(path, device, amp, trust)
        dataset, spec = joint_spec_for(loaded.ckpt, path)
        return cls(loaded.generator, loaded.cfg, dataset, spec, loaded.device, flip, loaded.ckpt[LOADED_FROM])

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


def joint_records(spec: JointSpec, coords: np.ndarray, scores: np.ndarray) -> list[dict]:
    """The joints of one prediction as JSON records: name, x and y (original px), heatmap peak score."""
    return [{"name": n, "x": float(x), "y": float(y), "score": float(s)}
            for n, (x, y), s in zip(spec.names, coords, scores, strict=True)]


@dataclass
class Outcome:
    """What ``predict_files`` did: one record per image or video, and the files it skipped as unreadable."""

    records: list[dict]
    skipped: list[str]


def predict_files(predictor: Predictor, jobs: list[Job], boxes: Boxes | None = None,
                  skip_bad: bool = False) -> Outcome:
    """Predict the ``jobs`` of ``plan_jobs``: a video (``predict_video``), or images, writing ``<name>.json`` and
    ``<name>.png`` per image. ``skip_bad``: an image that cannot be decoded is skipped and named in
    ``Outcome.skipped`` instead of stopping the run."""
    boxes = boxes or Boxes()
    if len(jobs) == 1 and jobs[0].video:
        record = predict_video(predictor, jobs[0], boxes, skip_bad)
        return Outcome([record], record["skipped"])
    records, skipped = [], []
    for job in jobs:
        try:
            rgb = read_image(job.source)
        except UserInputError:
            if not skip_bad:
                raise
            skipped.append(os.path.basename(job.source))
            continue
        height, width = rgb.shape[:2]
        box = boxes.for_image(job.source, width, height)
        coords, scores = predictor.predict(rgb, *box_from_xywh(*box))
        record = {
            "image": job.source, "width": width, "height": height, "box_xywh": list(box),
            "dataset": predictor.dataset, "joints": joint_records(predictor.spec, coords, scores),
        }
        record["json"], record["png"] = job.outputs
        write_json(record["json"], {k: v for k, v in record.items() if k not in ("json", "png")})
        write_image(record["png"], draw_prediction(rgb, coords, predictor.spec, box))
        records.append(record)
    if not records:
        folder = os.path.dirname(jobs[0].source) if jobs else ""
        raise UserInputError(f"--image {folder}: no image could be decoded (skipped: {', '.join(skipped)})")
    return Outcome(records, skipped)


def predict_video(predictor: Predictor, job: Job, boxes: Boxes, skip_bad: bool = False) -> dict:
    """Predict every frame of the video of ``job``: ``<stem>.mp4`` (the skeletons drawn over the frames, same
    size and fps, mp4v) and ``<stem>.jsonl`` (one line per frame: frame, time_s, box_xywh, joints).

    Both files are written under temporary names and renamed when the video is done, so a failure leaves
    neither behind. A video that stops decoding before the frame count its container declares (a cut or
    damaged file) is an error, or with ``skip_bad`` keeps the frames decoded so far and names the rest in the
    record's ``skipped``."""
    path = job.source
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise UserInputError(f"--image: cannot open video {path}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps_known = bool(np.isfinite(fps) and 0 < fps <= MAX_FPS)
    fps = float(fps) if fps_known else DEFAULT_FPS
    declared = job.frames
    jsonl_out, video_out = job.outputs
    frame, width, height = 0, 0, 0
    writer = None
    bar = tqdm(total=declared, desc=os.path.basename(path), unit="frame", leave=False)  # the summary line stays
    try:
        with atomic_output(video_out) as tmp_video, atomic_output(jsonl_out) as tmp_jsonl, \
                open(tmp_jsonl, "w") as lines:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if writer is None:
                    height, width = rgb.shape[:2]
                    writer = cv2.VideoWriter(tmp_video, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                    if not writer.isOpened():
                        raise UserInputError(f"cannot write {video_out}: OpenCV could not open an mp4v writer")
                box = boxes.for_frame(frame, width, height)
                coords, scores = predictor.predict(rgb, *box_from_xywh(*box))
                lines.write(json.dumps(json_safe({"frame": frame, "time_s": frame / fps, "box_xywh": list(box),
                                                  "joints": joint_records(predictor.spec, coords, scores)}),
                                       allow_nan=False) + "\n")
                writer.write(draw_prediction(rgb, coords, predictor.spec, box))
                frame += 1
                bar.update()
            if writer is not None:
                writer.release()
                if os.path.getsize(tmp_video) == 0:  # VideoWriter reports no write errors (a full disk)
                    raise UserInputError(f"cannot write {video_out}: nothing was written (disk full?)")
            if frame == 0:
                raise UserInputError(f"--image: no frame of video {path} could be decoded")
            skipped = []
            if declared is not None and frame < declared:
                if not skip_bad:
                    raise UserInputError(f"--image {path}: frame {frame} of the {declared} the video declares cannot "
                                         f"be decoded (a cut or damaged file?); pass --skip_bad_images to keep the "
                                         f"{frame} frames before it")
                skipped = [f"{os.path.basename(path)} frames {frame}-{declared - 1}"]
    finally:
        bar.close()
        capture.release()
        if writer is not None:
            writer.release()
    return {"image": path, "video": video_out, "jsonl": jsonl_out, "frames": frame, "fps": fps,
            "fps_known": fps_known, "width": width, "height": height, "dataset": predictor.dataset,
            "skipped": skipped}
