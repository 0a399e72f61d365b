"""Procedurally drawn people on cluttered backgrounds: an MPII-layout dataset that needs no files.

Scene ``i`` of a split is drawn from ``np.random.default_rng((base_seed, split_id, i))``, so every split
is a disjoint, reproducible stream. ``sample_scene`` picks every random choice (pose, colours, clutter,
occluders, noise seed) and ``render_scene`` only draws them, so annotations cost no drawing.

Frames: canvas px, 0-based, x right, y down, pixel centres at integer coordinates (as in utils.geometry).
Left/right follows photographs: a front-facing figure (face drawn) shows its right side on the image's
left; a back-facing one (hair only) on the image's right. The pose distribution is mirror-symmetric, so
the training pipeline's flip-with-label-swap keeps images and labels consistent.
"""

from __future__ import annotations

import cmath
import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from datasets.base import Annotations, PoseDataset, person_box_from_joints
from datasets.skeleton import MPII
from utils.errors import UserInputError

FRONT_PROB = 0.8  # probability that a figure faces the camera
OCCLUDER_PROB = 0.6  # probability that an image gets 1-2 occluders over the figure
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Drawn segments (joint a, joint b), their widths as fractions of body height, and end/start taper:
# r/l upper arm, r/l forearm, r/l thigh, r/l shin, neck. Thighs are the widest, forearms the thinnest.
LIMBS = ((12, 11), (13, 14), (11, 10), (14, 15), (2, 1), (3, 4), (1, 0), (4, 5), (7, 8))
_WIDTH = np.array([0.062, 0.062, 0.05, 0.05, 0.095, 0.095, 0.07, 0.07, 0.05])
_TAPER = np.array([0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.75, 0.75, 1.0])
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex positions keep thin limbs at their true place
_SCALE = float(1 << _SHIFT)
_SKIN = (np.array([250.0, 222.0, 196.0]), np.array([80.0, 52.0, 36.0]))  # lightest, darkest skin tone
_HAIR = ((25, 22, 20), (80, 52, 30), (196, 160, 96), (150, 150, 150), (130, 58, 28))


@dataclass
class Scene:
    """Everything ``render_scene`` needs to draw one image; all positions in canvas px.

    ``joints`` (16, 2) in MPII order, ``occluded`` (16,) True where an occluder covers the joint.
    ``head`` = (cx, cy, half-length along the neck->top axis, half-width, angle deg) of the head ellipse.
    ``facing_front`` and ``rotation`` (deg, whole body, before any torso lean) describe the figure;
    the remaining fields are drawing parameters (colours are RGB uint8 triples).
    """

    joints: np.ndarray
    occluded: np.ndarray
    head: tuple[float, float, float, float, float]
    facing_front: bool
    rotation: float
    widths: np.ndarray  # (len(LIMBS),) px
    limb_colors: np.ndarray  # (len(LIMBS), 3)
    upper: tuple[int, int, int]
    lower: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shoe: tuple[int, int, int]
    order: tuple[int, ...]  # drawing order of LIMBS indices; torso and head are inserted by render_scene
    field: np.ndarray  # (k, k, 3) low-resolution background colours
    stripes: tuple | None  # background stripes: (angle deg, period px, thickness px, colour)
    clutter: list  # behind the figure: ("stroke", points, width, colour) or ("blob", ellipse, colour)
    front: list  # strokes drawn over the figure
    occluders: list  # ("rect" | "ellipse", centre, (w, h), angle deg, colour, stripe colour, period px)
    noise: int  # amplitude of the per-pixel grey noise
    noise_seed: int


def _rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    h, s, v = rng.random(3).tolist()
    r, g, b = colorsys.hsv_to_rgb(h, 0.9 * s, 0.15 + 0.8 * v)
    return int(r * 255), int(g * 255), int(b * 255)


def _skin(rng: np.random.Generator) -> tuple[int, int, int]:
    c = _SKIN[0] + rng.random() * (_SKIN[1] - _SKIN[0]) + rng.uniform(-10, 10, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _jitter(rng: np.random.Generator, color: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    d = amount * (2 * rng.random() - 1)  # one brightness shift: shading, not a new hue
    return tuple(min(255, max(0, int(v + d))) for v in color)


def _down(deg: float) -> complex:
    """Unit vector as x + iy: 0 deg = straight down, +90 = towards the image's left; angles add like rotations."""
    return 1j * cmath.exp(1j * math.radians(deg))


def _pose(rng: np.random.Generator, height: float) -> np.ndarray:
    """(16, 2) joints of a front-facing figure (its right on the image's left), pelvis at the origin, unrotated.

    Limb angles are 0 = hanging down, 90 = sideways outwards, 180 = up, negative = across the body; elbows
    and knees bend one way (towards the midline). Complex numbers keep this scalar code cheap.
    """
    def length(frac: float) -> float:  # random foreshortening: limbs pointing at the camera look short
        return frac * height * (0.55 + 0.45 * rng.random() if rng.random() < 0.25 else 1.0)

    j = [0j] * 16
    lean, tilt, twist = 40 * rng.random() - 20, 50 * rng.random() - 25, 0.6 + 0.4 * rng.random()
    j[7] = 0.30 * height * _down(180 + lean)
    j[8] = j[7] + 0.05 * height * _down(180 + lean + tilt / 2)
    j[9] = j[8] + 0.13 * height * _down(180 + lean + tilt)
    leg_mode = int(np.searchsorted((0.5, 0.8), rng.random()))  # standing, legs apart / action, crouching
    for side, (sh, el, wr, hip, kn, an) in ((-1, (12, 11, 10, 2, 1, 0)), (1, (13, 14, 15, 3, 4, 5))):
        j[sh] = j[7] + side * 0.115 * height * twist * _down(lean - 90) + 0.02 * height * _down(lean)
        arm = int(np.searchsorted((0.45, 0.85), rng.random()))  # hanging, raised / out, across the body
        a = rng.uniform(*((-20, 45), (45, 175), (-45, 0))[arm])
        bend = rng.uniform(-5, 150) if rng.random() < 0.55 else rng.uniform(0, 35)
        j[el] = j[sh] + length(0.165) * _down(lean - side * a)
        j[wr] = j[el] + length(0.15) * _down(lean - side * (a - bend))
        j[hip] = side * 0.075 * height * twist + 0.015j * height
        a = rng.uniform(*((-8, 20), (10, 60), (-10, 50))[leg_mode])
        bend = rng.uniform(*((0, 20), (0, 70), (30, 150))[leg_mode])
        thigh = 0.235 * height * (rng.uniform(0.45, 0.8) if leg_mode == 2 else rng.uniform(0.8, 1.0))
        j[kn] = j[hip] + thigh * _down(-side * a)
        j[an] = j[kn] + length(0.235) * _down(-side * (a - bend))
    return np.array([(z.real, z.imag) for z in j])


def _stroke(rng: np.random.Generator, canvas: int, height: float, colors: list) -> tuple:
    """A limb-like capsule chain (1-2 segments) with a figure-like width and colour."""
    r = rng.random(9).tolist()  # one batch of uniforms: scene sampling must stay cheap (6000 scenes at init)
    pts = [((1.2 * r[0] - 0.1) * canvas, (1.2 * r[1] - 0.1) * canvas)]
    for k in range(1 if r[2] < 0.5 else 2):
        length, angle = (0.12 + 0.16 * r[3 + 2 * k]) * height, 2 * math.pi * r[4 + 2 * k]
        pts.append((pts[-1][0] + length * math.cos(angle), pts[-1][1] + length * math.sin(angle)))
    color = colors[int(r[7] * len(colors))] if r[8] < 0.4 else _color(rng)
    return "stroke", np.array(pts), (0.04 + 0.06 * rng.random()) * height, _jitter(rng, color, 15)


def _inside(points: np.ndarray, occ: tuple) -> np.ndarray:
    """Which points lie inside an occluder (rotated rectangle or ellipse)."""
    kind, center, (w, h), angle = occ[:4]
    local = (points - center) @ _rot(angle)  # rows times R = R^T applied: into the occluder's frame
    u, v = local[:, 0] / (w / 2), local[:, 1] / (h / 2)
    return (np.maximum(abs(u), abs(v)) <= 1) if kind == "rect" else (u * u + v * v <= 1)


def sample_scene(rng: np.random.Generator, canvas: int) -> Scene:
    """Draw every random choice of one image of side ``canvas`` px (a pure function of ``rng``'s state)."""
    height = rng.uniform(0.45, 0.8) * canvas
    local = _pose(rng, height)
    facing_front = bool(rng.random() < FRONT_PROB)
    if not facing_front:  # seen from behind, the figure's right side is on the image's right
        local[:, 0] *= -1
    rotation = rng.normal(0, 15) if rng.random() < 0.9 else rng.uniform(-100, 100)
    rotation = float(np.clip(rotation, -100, 100))
    local = local @ _rot(rotation).T
    widths = _WIDTH * height * rng.uniform(0.75, 1.3) * rng.uniform(0.9, 1.1, len(LIMBS))
    lo, hi = local.min(0) - 0.1 * height, local.max(0) + 0.1 * height
    slack = np.maximum(canvas - (hi - lo), 0) / 2 + 0.05 * canvas
    offset = canvas / 2 - (lo + hi) / 2 + rng.uniform(-slack, slack)
    joints = local + offset

    axis = joints[9] - joints[8]
    head_len = float(np.linalg.norm(axis))
    center = joints[8] + 0.52 * axis
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    head = (float(center[0]), float(center[1]), 0.5 * head_len, 0.38 * head_len * rng.uniform(0.9, 1.1), angle)

    upper, lower, skin = _color(rng), _color(rng), _skin(rng)
    hair = _jitter(rng, _HAIR[rng.integers(len(_HAIR))], 12)
    forearm = upper if rng.random() < 0.4 else skin  # long or short sleeves
    shin = lower if rng.random() < 0.6 else skin  # trousers or shorts
    base = [upper, upper, forearm, forearm, lower, lower, shin, shin, skin]
    limb_colors = np.array([_jitter(rng, c, 12) for c in base], np.uint8)
    legs, arms = [4, 5, 6, 7], [0, 2, 1, 3]
    if rng.random() < 0.5:
        legs = [5, 7, 4, 6]
    if rng.random() < 0.5:
        arms = [1, 3, 0, 2]
    order = (*legs, 8, *arms)

    colors = [upper, lower, skin]
    field = rng.integers(0, 256, (rng.integers(2, 6),) * 2 + (3,), dtype=np.uint8)
    stripes = None
    if rng.random() < 0.6:
        period = rng.uniform(4, 24)
        stripes = (rng.uniform(0, 180), period, int(rng.integers(1, max(2, int(period / 2)))), _color(rng))
    clutter = [_stroke(rng, canvas, height, colors) for _ in range(rng.integers(3, 9))]
    for _ in range(rng.integers(2, 6)):
        ell = (rng.uniform(0, canvas, 2), rng.uniform(0.03, 0.15, 2) * canvas, rng.uniform(0, 180))
        clutter.append(("blob", ell, _color(rng) if rng.random() < 0.7 else skin))
    front = [_stroke(rng, canvas, height, colors)] if rng.random() < 0.25 else []

    occluders = []
    if rng.random() < OCCLUDER_PROB:
        for _ in range(rng.integers(1, 3)):
            c = joints[rng.integers(16)] + rng.normal(0, 0.08 * height, 2)
            size = rng.uniform(0.15, 0.4, 2) * height
            kind = "rect" if rng.random() < 0.6 else "ellipse"
            occluders.append((kind, c, size, rng.uniform(0, 180), _color(rng), _color(rng), rng.uniform(3, 10)))
    occluded = np.zeros(16, bool)
    for occ in occluders:
        occluded |= _inside(joints, occ)
    for _, pts, w, _ in front:  # a stroke over the figure hides the joints under it, like an occluder
        for p, q in zip(pts[:-1], pts[1:], strict=False):
            t = np.clip((joints - p) @ (q - p) / max(float((q - p) @ (q - p)), 1e-9), 0, 1)
            occluded |= np.linalg.norm(joints - (p + t[:, None] * (q - p)), axis=1) <= w / 2

    return Scene(
        joints=joints, occluded=occluded, head=head, facing_front=facing_front, rotation=rotation,
        widths=widths, limb_colors=limb_colors, upper=upper, lower=lower, skin=skin, hair=hair,
        shoe=_jitter(rng, (40, 35, 30), 30), order=order, field=field, stripes=stripes, clutter=clutter,
        front=front, occluders=occluders, noise=int(rng.integers(3, 13)), noise_seed=int(rng.integers(2**31)),
    )


def head_box_sizes(head: tuple[float, float, float, float, float]) -> tuple[float, float]:
    """Width and height (canvas px) of the axis-aligned box around a head ellipse ``Scene.head``."""
    _, _, a, b, angle = head
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    return 2 * float(np.hypot(a * c, b * s)), 2 * float(np.hypot(a * s, b * c))


def _fix(p) -> tuple[int, int]:
    return int(round(float(p[0]) * _SCALE)), int(round(float(p[1]) * _SCALE))


def _capsule(img: np.ndarray, p, q, w1: float, w2: float, color: tuple) -> None:
    """Filled tapered quad with round caps from ``p`` (width ``w1``) to ``q`` (width ``w2``)."""
    # Plain floats: this runs ~30 times per image, where small-array numpy overhead would dominate.
    px, py, qx, qy = float(p[0]) * _SCALE, float(p[1]) * _SCALE, float(q[0]) * _SCALE, float(q[1]) * _SCALE
    norm = max(((qx - px) ** 2 + (qy - py) ** 2) ** 0.5, 1e-6)
    nx, ny = (py - qy) / norm, (qx - px) / norm
    a, b = 0.5 * w1 * _SCALE, 0.5 * w2 * _SCALE
    quad = [(px + nx * a, py + ny * a), (qx + nx * b, qy + ny * b), (qx - nx * b, qy - ny * b), (px - nx * a, py - ny * a)]
    cv2.fillConvexPoly(img, np.array(quad).round().astype(np.int32), color, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, (round(px), round(py)), max(round(a), 1), color, -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, (round(qx), round(qy)), max(round(b), 1), color, -1, cv2.LINE_AA, _SHIFT)


def _ellipse(img: np.ndarray, center, axes, angle: float, color, thickness: int = -1) -> None:
    axes = (max(int(axes[0] * _SCALE), 1), max(int(axes[1] * _SCALE), 1))
    cv2.ellipse(img, _fix(center), axes, angle, 0, 360, color, thickness, cv2.LINE_AA, _SHIFT)


def _draw_head(img: np.ndarray, s: Scene) -> None:
    cx, cy, a, b, angle = s.head
    along = np.array([np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))])  # neck -> head top
    side = np.array([-along[1], along[0]])
    c = np.array([cx, cy])
    _ellipse(img, c, (a, b), angle, s.hair)
    if s.facing_front:  # face below the hairline: eyes and a mouth tell front from back
        _ellipse(img, c - 0.15 * a * along, (0.85 * a, 0.9 * b), angle, s.skin)
        eye = max(0.13 * b, 0.6)
        for k in (-1, 1):
            _ellipse(img, c + 0.05 * a * along + k * 0.4 * b * side, (eye, eye), 0, (20, 20, 20))
        mouth = c - 0.5 * a * along
        cv2.line(img, _fix(mouth - 0.3 * b * side), _fix(mouth + 0.3 * b * side), (120, 30, 30),
                 max(1, int(0.08 * b)), cv2.LINE_AA, _SHIFT)


def _draw_figure(img: np.ndarray, s: Scene) -> None:
    j, w = s.joints, s.widths
    # Torso: shoulders and hips pushed outwards by half a limb width so arms and legs attach to its edge.
    out_sh, out_hip = (j[12] - j[13]) / 2, (j[2] - j[3]) / 2
    shw = 0.5 * w[0] / max(float(np.hypot(*out_sh)), 1e-6)
    hipw = 0.5 * w[4] / max(float(np.hypot(*out_hip)), 1e-6)
    shoulders = (j[12] + shw * out_sh, j[13] - shw * out_sh)
    hips = (j[3] - hipw * out_hip, j[2] + hipw * out_hip)
    waist = [h + 0.75 * (sh - h) for sh, h in zip(shoulders, hips[::-1], strict=True)]
    for idx in s.order:
        a, b = LIMBS[idx]
        color = tuple(int(v) for v in s.limb_colors[idx])
        dark = tuple(int(v * 0.6) for v in color)
        if idx == 8:  # neck first, then the torso over its base, then the head
            _capsule(img, j[a], j[b], w[idx], w[idx], color)
            torso = np.array([*shoulders, *hips]) * _SCALE
            cv2.fillPoly(img, [torso.astype(np.int32)], s.upper, cv2.LINE_AA, _SHIFT)
            belly = np.array([*waist, *hips]) * _SCALE
            cv2.fillPoly(img, [belly.astype(np.int32)], s.lower, cv2.LINE_AA, _SHIFT)
            if s.facing_front:  # a buttoned front line, absent on the back
                top, bottom = (shoulders[0] + shoulders[1]) / 2, (waist[0] + waist[1]) / 2
                cv2.line(img, _fix(top), _fix(bottom), dark, max(1, int(0.2 * w[8])), cv2.LINE_AA, _SHIFT)
            _draw_head(img, s)
            continue
        # Darker rim first: a visible outline separates a limb from a same-coloured torso or background.
        rim = max(1.0, 0.12 * w[idx])
        _capsule(img, j[a], j[b], w[idx] + rim, w[idx] * _TAPER[idx] + rim, dark)
        _capsule(img, j[a], j[b], w[idx], w[idx] * _TAPER[idx], color)
        if idx in (2, 3):  # hand
            _ellipse(img, j[b], (0.6 * w[idx],) * 2, 0, s.skin)
        elif idx in (6, 7):  # shoe continuing the shin
            d = (j[b] - j[a]) / max(float(np.linalg.norm(j[b] - j[a])), 1e-6)
            _capsule(img, j[b], j[b] + 0.5 * w[idx] * d, 0.8 * w[idx], 0.8 * w[idx], s.shoe)


def _draw_clutter(img: np.ndarray, items: list) -> None:
    for item in items:
        if item[0] == "stroke":
            _, pts, width, color = item
            for p, q in zip(pts[:-1], pts[1:], strict=False):
                _capsule(img, p, q, width, 0.85 * width, color)
        else:
            (center, axes, angle), color = item[1], item[2]
            _ellipse(img, center, axes, angle, color)


def _draw_occluder(img: np.ndarray, occ: tuple) -> None:
    kind, center, (w, h), angle, color, stripe, period = occ
    if kind == "ellipse":
        _ellipse(img, center, (w / 2, h / 2), angle, color)
        for r in np.arange(period, min(w, h) / 2, 2 * period):  # concentric rings as texture
            _ellipse(img, center, (w / 2 - r, h / 2 - r), angle, stripe, max(1, int(period / 2)))
        return
    rot = _rot(angle)
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2 @ rot.T + center
    cv2.fillConvexPoly(img, np.round(corners * _SCALE).astype(np.int32), color, cv2.LINE_AA, _SHIFT)
    for x in np.arange(-w / 2 + period / 2, w / 2, 2 * period):  # stripes across the rectangle as texture
        p, q = rot @ [x, -h / 2] + center, rot @ [x, h / 2] + center
        cv2.line(img, _fix(p), _fix(q), stripe, max(1, int(period / 2)), cv2.LINE_AA, _SHIFT)


def render_scene(scene: Scene, canvas: int) -> np.ndarray:
    """Draw ``scene`` on a ``canvas`` x ``canvas`` image: (H, W, 3) uint8 RGB; a pure function of its inputs."""
    img = cv2.resize(scene.field, (canvas, canvas), interpolation=cv2.INTER_LINEAR)
    if scene.stripes is not None:
        angle, period, thick, color = scene.stripes
        dx, dy = math.sin(math.radians(angle)) * 1.5 * canvas, math.cos(math.radians(angle)) * 1.5 * canvas
        for t in np.arange(-canvas, canvas, period).tolist():
            x, y = canvas / 2 + t * dy / (1.5 * canvas), canvas / 2 - t * dx / (1.5 * canvas)
            cv2.line(img, _fix((x - dx, y - dy)), _fix((x + dx, y + dy)), color, thick, cv2.LINE_AA, _SHIFT)
    _draw_clutter(img, scene.clutter)
    _draw_figure(img, scene)
    _draw_clutter(img, scene.front)
    for occ in scene.occluders:
        _draw_occluder(img, occ)
    noise = np.random.default_rng(scene.noise_seed).integers(0, 2 * scene.noise + 1, (canvas, canvas), np.uint8)
    # Grey noise in [-a, a] via two saturating uint8 ops (4x faster than an int16 round trip); the
    # brightest pixels come out up to a darker, which is harmless for texture.
    return cv2.subtract(cv2.add(img, cv2.merge([noise] * 3)), (scene.noise,) * 3 + (0,))


class SyntheticDataset(PoseDataset):
    """Procedural MPII-layout people: ``size`` scenes of split ``split`` ("train", "val"/"valid", "test").

    Joints are canvas px; a joint outside the canvas is not annotated, one under an occluder is annotated
    but not visible. The PCKh reference is 0.6 x the diagonal of the axis-aligned box around the head.
    """

    spec = MPII

    def __init__(self, split: str, size: int, base_seed: int, canvas: int, box_margin: float, **pipeline):
        super().__init__(**pipeline)
        split = "val" if split == "valid" else split
        if split not in SPLIT_IDS:
            raise UserInputError(f"--split: synthetic has no split '{split}'; valid: train, val (or valid), test")
        if size < 0 or base_seed < 0 or canvas < 32:
            raise UserInputError(f"synthetic: need size >= 0, seed >= 0, canvas >= 32 (got {size}, {base_seed}, {canvas})")
        self.split, self.canvas = split, canvas
        self.scenes = [sample_scene(np.random.default_rng((base_seed, SPLIT_IDS[split], i)), canvas) for i in range(size)]
        joints = np.array([s.joints for s in self.scenes], np.float64).reshape(size, 16, 2)
        annotated = ((joints >= 0) & (joints <= canvas - 1)).all(-1)
        occluded = np.array([s.occluded for s in self.scenes], bool).reshape(size, 16)
        centers, sides = person_box_from_joints(joints, annotated, box_margin)
        heads = np.array([head_box_sizes(s.head) for s in self.scenes], np.float64).reshape(size, 2)
        self.ann = Annotations(
            joints=joints,
            annotated=annotated,
            visible=annotated & ~occluded,
            centers=centers,
            box_sizes=sides,
            ref_lengths=0.6 * np.hypot(heads[:, 0], heads[:, 1]),
            image_names=[f"synthetic/{split}/{i:05d}" for i in range(size)],
        )

    def load_image(self, index: int) -> np.ndarray:
        """(canvas, canvas, 3) uint8 RGB image of scene ``index``, drawn on demand."""
        return render_scene(self.scenes[index], self.canvas)
