"""Procedurally drawn people on cluttered backgrounds: an MPII-layout dataset that needs no files.

Scene ``i`` of a split is drawn from ``np.random.default_rng((base_seed, split_id, i))``, so every split
is a disjoint, reproducible stream. ``sample_scene`` makes every random choice (pose, colours, clutter,
occluders, noise seed) and ``render_scene`` only draws them, so annotations need no drawing.

Frames: canvas px, 0-based, x right, y down, pixel centres at integer coordinates (as in utils.geometry).
Left/right follows photographs: a front-facing figure (face drawn) shows its right side on the image's
left; a back-facing one (hair only) on the image's right. The pose distribution is mirror-symmetric, so
the training pipeline's flip-with-label-swap keeps images and labels consistent. No cue such as "right
limbs darker" exists, because a mirrored image would then contradict its swapped labels.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass

import cv2
import numpy as np

from datasets.base import Annotations, PoseDataset, person_box_from_joints
from datasets.skeleton import MPII
from utils.errors import UserInputError

FRONT_PROB = 0.8  # probability that a figure faces the camera
OCCLUDER_PROB = 0.4  # probability that an image gets 1-2 occluders over the figure
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Drawn segments (joint a, joint b), their widths as fractions of body height, and end/start taper:
# r/l upper arm, r/l forearm, r/l thigh, r/l shin, neck. Thighs are the widest, forearms the thinnest.
LIMBS = ((12, 11), (13, 14), (11, 10), (14, 15), (2, 1), (3, 4), (1, 0), (4, 5), (7, 8))
_WIDTH = np.array([0.062, 0.062, 0.05, 0.05, 0.095, 0.095, 0.07, 0.07, 0.05])
_TAPER = (0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.75, 0.75, 1.0)
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex positions keep thin limbs where they belong
_SCALE = float(1 << _SHIFT)
_SKIN = (np.array([250.0, 222.0, 196.0]), np.array([80.0, 52.0, 36.0]))  # lightest, darkest skin tone
# Darker than most skin so a back view (all hair) differs from a face even where the eyes are a pixel wide.
_HAIR = np.array([(25, 22, 20), (70, 45, 28), (110, 72, 40), (75, 75, 75), (120, 52, 26)], np.float64)


@dataclass
class Scene:
    """Everything ``render_scene`` needs to draw one image; positions in canvas px, colours RGB uint8.

    ``joints`` (16, 2) MPII order; ``occluded`` (16,) True where an occluder or a front stroke covers the joint.
    ``head`` = (cx, cy, half-length along neck->top, half-width, angle deg) of the head ellipse.
    ``facing_front`` and ``rotation`` (deg, whole body about the pelvis; torso lean comes on top) describe the figure.
    """

    joints: np.ndarray
    occluded: np.ndarray
    head: tuple[float, float, float, float, float]
    facing_front: bool
    rotation: float
    widths: np.ndarray  # (len(LIMBS),) px
    limb_colors: np.ndarray  # (len(LIMBS), 3)
    palette: np.ndarray  # (5, 3): upper clothes, lower clothes, skin, hair, shoes
    order: tuple[int, ...]  # drawing order of LIMBS indices (8 = neck, torso and head)
    field: np.ndarray  # (k, k, 3) low-resolution background colours, upsampled smoothly
    stripes: tuple | None  # background stripes: (angle deg, period px, thickness px, colour)
    strokes: np.ndarray  # (n, 3, 2) limb-like two-segment distractors
    stroke_widths: np.ndarray  # (n,)
    stroke_colors: np.ndarray  # (n, 3)
    n_front: int  # the last n_front strokes are drawn over the figure
    blobs: np.ndarray  # (m, 5): cx, cy, half-axes, angle deg
    blob_colors: np.ndarray  # (m, 3)
    occluders: list  # (is_rect, centre, (w, h), angle deg, colour, stripe colour, period px)
    noise: int  # amplitude of the per-pixel grey noise
    noise_seed: int


def _rot(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) uint8 RGB: any hue, grey to vivid, dark to light (clothes, objects)."""
    hsv = rng.random((n, 1, 3)) * (255, 230, 205) + (0, 0, 38)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)[:, 0]


def _shade(rng: np.random.Generator, colors: np.ndarray, amount: float) -> np.ndarray:
    """Random brightness shift per row: shading variation without a new hue."""
    return np.clip(colors + rng.uniform(-amount, amount, (len(colors), 1)), 0, 255).astype(np.uint8)


def _pick(x: float, cumulative: tuple[float, ...]) -> int:
    """Index of the first cumulative probability above uniform ``x``: a cheap categorical draw."""
    return sum(x >= c for c in cumulative)


def _down(deg: float) -> complex:
    """Unit vector as x + iy: 0 deg = straight down, +90 = towards the image's left; angles add like rotations."""
    return 1j * cmath.exp(1j * math.radians(deg))


def _pose(rng: np.random.Generator, height: float) -> np.ndarray:
    """(16, 2) joints of a front-facing figure (its right on the image's left), pelvis at the origin, unrotated.

    Limb angles: 0 = hanging down, 90 = sideways outwards, 180 = up, negative = across the body. Elbows and
    knees bend one way (towards the midline). Scalar complex arithmetic on one batch of uniforms keeps it cheap.
    """
    r = iter(rng.random(48).tolist())

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * next(r)

    def length(frac: float) -> float:  # random foreshortening: limbs pointing at the camera look short
        return frac * height * (u(0.55, 1.0) if next(r) < 0.25 else 1.0)

    j = [0j] * 16
    lean, tilt, twist = u(-20, 20), u(-25, 25), u(0.6, 1.0)  # twist: the torso turned away looks narrower
    j[7] = 0.30 * height * _down(180 + lean)
    j[8] = j[7] + 0.05 * height * _down(180 + lean + tilt / 2)
    j[9] = j[8] + 0.16 * height * _down(180 + lean + tilt)  # a large head: PCKh needs it visible at 32 px
    leg_mode = _pick(next(r), (0.5, 0.8))  # standing, legs apart / action, crouching / kneeling
    for side, (sh, el, wr, hip, kn, an) in ((-1, (12, 11, 10, 2, 1, 0)), (1, (13, 14, 15, 3, 4, 5))):
        j[sh] = j[7] + side * 0.115 * height * twist * _down(lean - 90) + 0.02 * height * _down(lean)
        arm = _pick(next(r), (0.45, 0.85))  # hanging, raised / out, across the body
        a = u(*((-20, 45), (45, 175), (-45, 0))[arm])
        bend = u(-5, 150) if next(r) < 0.55 else u(0, 35)
        j[el] = j[sh] + length(0.165) * _down(lean - side * a)
        j[wr] = j[el] + length(0.15) * _down(lean - side * (a - bend))
        j[hip] = side * 0.075 * height * twist + 0.015j * height
        a = u(*((-8, 20), (10, 60), (-10, 50))[leg_mode])
        bend = u(*((0, 20), (0, 70), (30, 150))[leg_mode])
        thigh = 0.235 * height * (u(0.45, 0.8) if leg_mode == 2 else u(0.85, 1.0))
        j[kn] = j[hip] + thigh * _down(-side * a)
        j[an] = j[kn] + length(0.235) * _down(-side * (a - bend))
    return np.array(j).view(np.float64).reshape(16, 2)


def _strokes(rng: np.random.Generator, canvas: int, height: float, fresh: np.ndarray, own: np.ndarray) -> tuple:
    """Limb-like distractors, one per ``fresh`` colour: (n, 3, 2) chains, widths, colours (40% from ``own``)."""
    n = len(fresh)
    r = rng.random((n, 10))
    angles = 2 * np.pi * r[:, 0:1] + np.array([0.0, 1.0]) * (r[:, 1:2] - 0.5) * 4.0  # bend up to ~115 deg
    lengths = (0.12 + 0.16 * r[:, 2:4]) * height * np.stack([np.ones(n), r[:, 5] > 0.5], 1)
    steps = lengths[..., None] * np.stack([np.cos(angles), np.sin(angles)], -1)
    start = (1.2 * r[:, None, 6:8] - 0.1) * canvas
    points = np.concatenate([start, start + np.cumsum(steps, 1)], 1)
    colors = np.where(r[:, 4:5] < 0.4, own[(r[:, 9] * len(own)).astype(int)], fresh)
    return points, (0.04 + 0.06 * r[:, 8]) * height, _shade(rng, colors, 15)


def _inside(points: np.ndarray, occ: tuple) -> np.ndarray:
    """Which points lie inside an occluder (rotated rectangle or ellipse)."""
    is_rect, center, (w, h), angle = occ[:4]
    local = (points - center) @ _rot(angle)  # row vectors times R = R^T applied: into the occluder's frame
    u, v = local[:, 0] / (w / 2), local[:, 1] / (h / 2)
    return (np.maximum(abs(u), abs(v)) <= 1) if is_rect else (u * u + v * v <= 1)


def _under_strokes(points: np.ndarray, strokes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Which points lie under any capsule segment of ``strokes`` (n, 3, 2)."""
    p, q = strokes[:, :-1].reshape(-1, 2), strokes[:, 1:].reshape(-1, 2)  # (S, 2) segments
    d = q - p
    t = np.einsum("jsk,sk->js", points[:, None] - p, d) / np.maximum((d * d).sum(1), 1e-9)
    nearest = p + np.clip(t, 0, 1)[..., None] * d
    return (np.linalg.norm(points[:, None] - nearest, axis=-1) <= np.repeat(widths, 2) / 2).any(1)


def sample_scene(rng: np.random.Generator, canvas: int) -> Scene:
    """Make every random choice of one ``canvas`` x ``canvas`` image; a pure function of ``rng``'s state."""
    height = rng.uniform(0.45, 0.8) * canvas  # head top to ankles when standing
    local = _pose(rng, height)
    facing_front = bool(rng.random() < FRONT_PROB)
    if not facing_front:  # seen from behind, the figure's right side is on the image's right
        local[:, 0] *= -1
    rotation = rng.normal(0, 15) if rng.random() < 0.9 else rng.uniform(-100, 100)
    rotation = min(max(float(rotation), -100.0), 100.0)
    local = local @ _rot(rotation).T
    lo, hi = local.min(0) - 0.1 * height, local.max(0) + 0.1 * height
    slack = np.maximum(canvas - (hi - lo), 0) / 2 + 0.05 * canvas  # may poke out of the frame a little
    joints = local + (canvas / 2 - (lo + hi) / 2 + slack * (2 * rng.random(2) - 1))

    axis = joints[9] - joints[8]
    head_len = math.hypot(*axis)
    center = joints[8] + 0.52 * axis  # the ellipse spans the neck..top axis, just past the head-top joint
    angle = math.degrees(math.atan2(axis[1], axis[0]))
    head = (float(center[0]), float(center[1]), 0.5 * head_len, head_len * rng.uniform(0.34, 0.42), angle)

    skin = _SKIN[0] + rng.random() * (_SKIN[1] - _SKIN[0])
    hair = _HAIR[rng.integers(len(_HAIR))]
    pool = iter(_colors(rng, 24))  # one conversion for every random colour of the scene (at most 2+1+5+5+4)
    palette = _shade(rng, np.array([next(pool), next(pool), skin, hair, (40, 35, 30)], np.float64), 12)
    upper, lower, skin = palette[0], palette[1], palette[2]
    forearm = upper if rng.random() < 0.4 else skin  # long or short sleeves
    shin = lower if rng.random() < 0.6 else skin  # trousers or shorts
    base = np.array([upper, upper, forearm, forearm, lower, lower, shin, shin, skin], np.float64)
    limb_colors = _shade(rng, base, 12)
    widths = _WIDTH * height * rng.uniform(0.75, 1.3) * rng.uniform(0.9, 1.1, len(LIMBS))
    legs = (5, 7, 4, 6) if rng.random() < 0.5 else (4, 6, 5, 7)  # which leg / arm is nearer the camera
    arms = (1, 3, 0, 2) if rng.random() < 0.5 else (0, 2, 1, 3)

    k = int(rng.integers(2, 6))
    field = rng.integers(0, 256, (k, k, 3), dtype=np.uint8)
    stripes = None
    if rng.random() < 0.6:
        period = rng.uniform(4, 24)
        stripes = (rng.uniform(0, 180), period, int(rng.integers(1, max(2, int(period / 2)))), next(pool))
    n_front = int(rng.random() < 0.25)
    n = int(rng.integers(1, 5)) + n_front
    fresh = np.array([next(pool) for _ in range(n)])
    strokes, stroke_widths, stroke_colors = _strokes(rng, canvas, height, fresh, palette[:3])
    m = int(rng.integers(2, 6))
    blobs = np.concatenate([rng.uniform(0, canvas, (m, 2)), rng.uniform(0.03, 0.15, (m, 2)) * canvas,
                            rng.uniform(0, 180, (m, 1))], 1)
    blob_colors = np.where((rng.random(m) < 0.3)[:, None], skin, [next(pool) for _ in range(m)])

    occluders = []
    if rng.random() < OCCLUDER_PROB:
        for _ in range(int(rng.integers(1, 3))):
            c = joints[rng.integers(16)] + rng.normal(0, 0.08 * height, 2)
            fill, stripe = next(pool), next(pool)
            occluders.append((bool(rng.random() < 0.6), c, tuple(rng.uniform(0.12, 0.32, 2) * height),
                              rng.uniform(0, 180), fill, stripe, rng.uniform(3, 10)))
    occluded = np.zeros(16, bool)
    if n_front:
        occluded |= _under_strokes(joints, strokes[-n_front:], stroke_widths[-n_front:])
    for occ in occluders:
        occluded |= _inside(joints, occ)

    return Scene(
        joints=joints, occluded=occluded, head=head, facing_front=facing_front, rotation=rotation,
        widths=widths, limb_colors=limb_colors, palette=palette, order=(*legs, 8, *arms), field=field,
        stripes=stripes, strokes=strokes, stroke_widths=stroke_widths, stroke_colors=stroke_colors,
        n_front=n_front, blobs=blobs, blob_colors=blob_colors, occluders=occluders,
        noise=int(rng.integers(3, 13)), noise_seed=int(rng.integers(2**31)),
    )


def head_box_sizes(head: tuple[float, float, float, float, float]) -> tuple[float, float]:
    """Width and height (canvas px) of the axis-aligned box around the head ellipse ``Scene.head``."""
    _, _, a, b, angle = head
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return 2 * math.hypot(a * c, b * s), 2 * math.hypot(a * s, b * c)


def _fix(p) -> tuple[int, int]:
    return round(float(p[0]) * _SCALE), round(float(p[1]) * _SCALE)


def _rgb(color) -> tuple[int, int, int]:
    return int(color[0]), int(color[1]), int(color[2])


def _capsule(img: np.ndarray, p, q, w1: float, w2: float, color: tuple) -> None:
    """Filled tapered quad with round caps from ``p`` (width ``w1``) to ``q`` (width ``w2``)."""
    # Plain floats: ~40 calls per image, where small-array numpy overhead would dominate the drawing.
    px, py, qx, qy = float(p[0]) * _SCALE, float(p[1]) * _SCALE, float(q[0]) * _SCALE, float(q[1]) * _SCALE
    norm = max(math.hypot(qx - px, qy - py), 1e-6)
    nx, ny = (py - qy) / norm, (qx - px) / norm
    a, b = 0.5 * w1 * _SCALE, 0.5 * w2 * _SCALE
    quad = [(px + nx * a, py + ny * a), (qx + nx * b, qy + ny * b), (qx - nx * b, qy - ny * b),
            (px - nx * a, py - ny * a)]
    cv2.fillConvexPoly(img, np.array(quad).round().astype(np.int32), color, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, (round(px), round(py)), max(round(a), 1), color, -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, (round(qx), round(qy)), max(round(b), 1), color, -1, cv2.LINE_AA, _SHIFT)


def _ellipse(img: np.ndarray, center, axes, angle: float, color, thickness: int = -1) -> None:
    axes = (max(round(axes[0] * _SCALE), 1), max(round(axes[1] * _SCALE), 1))
    cv2.ellipse(img, _fix(center), axes, float(angle), 0, 360, color, thickness, cv2.LINE_AA, _SHIFT)


def _draw_head(img: np.ndarray, s: Scene) -> None:
    cx, cy, a, b, angle = s.head
    along = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])  # neck -> head top
    side, c = np.array([-along[1], along[0]]), np.array([cx, cy])
    _ellipse(img, c, (a, b), angle, _rgb(s.palette[3]))
    if s.facing_front:  # a face below the hairline (eyes, mouth) tells front from back
        _ellipse(img, c - 0.15 * a * along, (0.85 * a, 0.9 * b), angle, _rgb(s.palette[2]))
        for k in (-1, 1):  # white and pupil: visible on light and dark skin alike
            eye = c + 0.05 * a * along + k * 0.4 * b * side
            _ellipse(img, eye, (max(0.18 * b, 0.8),) * 2, 0, (235, 235, 235))
            _ellipse(img, eye, (max(0.1 * b, 0.5),) * 2, 0, (20, 20, 20))
        mouth = c - 0.5 * a * along
        cv2.line(img, _fix(mouth - 0.3 * b * side), _fix(mouth + 0.3 * b * side), (120, 30, 30),
                 max(1, int(0.08 * b)), cv2.LINE_AA, _SHIFT)


def _draw_figure(img: np.ndarray, s: Scene) -> None:
    j, w = s.joints, s.widths
    # Torso corners pushed outwards by half a limb width so arms and legs attach at its edge.
    out_sh, out_hip = j[12] - j[13], j[2] - j[3]
    out_sh = out_sh * (0.5 * w[0] / max(math.hypot(*out_sh), 1e-6))
    out_hip = out_hip * (0.5 * w[4] / max(math.hypot(*out_hip), 1e-6))
    corners = np.array([j[12] + out_sh, j[13] - out_sh, j[3] - out_hip, j[2] + out_hip])
    waist = corners[[3, 2]] + 0.25 * (corners[[0, 1]] - corners[[3, 2]])
    upper, lower = _rgb(s.palette[0]), _rgb(s.palette[1])
    for idx in s.order:
        a, b = LIMBS[idx]
        color = _rgb(s.limb_colors[idx])
        dark = _rgb(s.limb_colors[idx] * 0.6)
        if idx == 8:  # neck first, then the torso over its base, then the head
            _capsule(img, j[a], j[b], w[idx], w[idx], color)
            cv2.fillPoly(img, [np.round(corners * _SCALE).astype(np.int32)], upper, cv2.LINE_AA, _SHIFT)
            belly = np.array([*waist, corners[2], corners[3]])
            cv2.fillPoly(img, [np.round(belly * _SCALE).astype(np.int32)], lower, cv2.LINE_AA, _SHIFT)
            if s.facing_front:  # a buttoned front line, absent on the back
                top, bottom = corners[:2].mean(0), waist.mean(0)
                cv2.line(img, _fix(top), _fix(bottom), _rgb(s.palette[0] * 0.6), max(1, int(0.2 * w[8])),
                         cv2.LINE_AA, _SHIFT)
            _draw_head(img, s)
            continue
        # Darker rim first: an outline separates a limb from a same-coloured torso or background.
        rim = max(1.0, 0.12 * w[idx])
        _capsule(img, j[a], j[b], w[idx] + rim, w[idx] * _TAPER[idx] + rim, dark)
        _capsule(img, j[a], j[b], w[idx], w[idx] * _TAPER[idx], color)
        if idx in (2, 3):  # hand
            _ellipse(img, j[b], (0.6 * w[idx],) * 2, 0, _rgb(s.palette[2]))
        elif idx in (6, 7):  # shoe continuing the shin
            d = (j[b] - j[a]) / max(math.hypot(*(j[b] - j[a])), 1e-6)
            _capsule(img, j[b], j[b] + 0.5 * w[idx] * d, 0.8 * w[idx], 0.8 * w[idx], _rgb(s.palette[4]))


def _draw_strokes(img: np.ndarray, s: Scene, front: bool) -> None:
    first = len(s.strokes) - s.n_front
    for i in range(first, len(s.strokes)) if front else range(first):
        pts, width, color = s.strokes[i], s.stroke_widths[i], _rgb(s.stroke_colors[i])
        _capsule(img, pts[0], pts[1], width, 0.85 * width, color)
        if pts[2, 0] != pts[1, 0] or pts[2, 1] != pts[1, 1]:
            _capsule(img, pts[1], pts[2], 0.85 * width, 0.7 * width, color)


def _draw_occluder(img: np.ndarray, occ: tuple) -> None:
    is_rect, center, (w, h), angle, fill, stripe, period = occ
    fill, stripe, thick = _rgb(fill), _rgb(stripe), max(1, int(period / 2))
    if not is_rect:
        _ellipse(img, center, (w / 2, h / 2), angle, fill)
        for r in np.arange(period, min(w, h) / 2, 2 * period):  # concentric rings as texture
            _ellipse(img, center, (w / 2 - r, h / 2 - r), angle, stripe, thick)
        return
    rot = _rot(angle)
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2 @ rot.T + center
    cv2.fillConvexPoly(img, np.round(corners * _SCALE).astype(np.int32), fill, cv2.LINE_AA, _SHIFT)
    for x in np.arange(-w / 2 + period / 2, w / 2, 2 * period):  # stripes across the rectangle as texture
        cv2.line(img, _fix(rot @ [x, -h / 2] + center), _fix(rot @ [x, h / 2] + center), stripe, thick,
                 cv2.LINE_AA, _SHIFT)


def render_scene(scene: Scene, canvas: int) -> np.ndarray:
    """Draw ``scene`` on a ``canvas`` x ``canvas`` image: (H, W, 3) uint8 RGB; a pure function of its inputs."""
    img = cv2.resize(scene.field, (canvas, canvas), interpolation=cv2.INTER_LINEAR)
    if scene.stripes is not None:
        angle, period, thick, color = scene.stripes
        ux, uy = math.sin(math.radians(angle)), math.cos(math.radians(angle))  # along the stripes
        for t in np.arange(-canvas, canvas, period).tolist():
            x, y, dx, dy = canvas / 2 + t * uy, canvas / 2 - t * ux, 2 * canvas * ux, 2 * canvas * uy
            cv2.line(img, _fix((x - dx, y - dy)), _fix((x + dx, y + dy)), _rgb(color), thick, cv2.LINE_AA, _SHIFT)
    for blob, color in zip(scene.blobs, scene.blob_colors, strict=True):
        _ellipse(img, blob[:2], blob[2:4], blob[4], _rgb(color))
    _draw_strokes(img, scene, front=False)
    _draw_figure(img, scene)
    _draw_strokes(img, scene, front=True)
    for occ in scene.occluders:
        _draw_occluder(img, occ)
    a = scene.noise
    noise = np.random.default_rng(scene.noise_seed).integers(0, 2 * a + 1, (canvas, canvas), np.uint8)
    # Grey noise n in [-a, a] as saturating uint8 ops (2x faster than an int16 round trip): subtract max(-n, 0),
    # then add max(n, 0); one of the two is zero per pixel, so this is exactly clip(img + n, 0, 255).
    neg, pos = cv2.subtract(a, noise), cv2.subtract(noise, a)
    return cv2.add(cv2.subtract(img, cv2.merge([neg] * 3)), cv2.merge([pos] * 3))


class SyntheticDataset(PoseDataset):
    """Procedural MPII-layout people: ``size`` scenes of split ``split`` ("train", "val" / "valid", "test").

    Joints are canvas px; a joint outside the canvas is not annotated, one under an occluder is annotated but
    not visible. The PCKh reference is 0.6 x the diagonal of the axis-aligned box around the drawn head.
    Scenes are sampled at construction (cheap); images are drawn on demand by ``load_image``.
    """

    spec = MPII

    def __init__(self, split: str, size: int, base_seed: int, canvas: int, box_margin: float,
                 split_flag: str = "--split", **pipeline):
        """``split_flag``: the flag that chose ``split``, named when it is not one of the synthetic splits."""
        super().__init__(**pipeline)
        split = "val" if split == "valid" else split
        if split not in SPLIT_IDS:
            raise UserInputError(f"{split_flag}: synthetic has no split '{split}'; valid: train, val (or valid), test")
        if size < 0 or base_seed < 0 or canvas < 32:
            raise UserInputError(f"synthetic: need size, seed >= 0 and canvas >= 32; got {size}, {base_seed}, {canvas}")
        self.split, self.canvas = split, canvas
        seeds = ((base_seed, SPLIT_IDS[split], i) for i in range(size))
        self.scenes = [sample_scene(np.random.default_rng(seed), canvas) for seed in seeds]
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
        """(canvas, canvas, 3) uint8 RGB image of scene ``index``, drawn on demand (deterministic)."""
        return render_scene(self.scenes[index], self.canvas)
