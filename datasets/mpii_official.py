"""The official MPII release (``mpii_human_pose_v1_u12_1.mat``) turned into the stacked-hourglass h5 layout.

``RELEASE.annolist(i).annorect(r)`` becomes one row of ``annot/{train,valid,test}.h5``. The conventions are those
of Newell et al.'s published files, checked field by field against the real ``valid.h5`` (2958 people):

- ``part``: the .mat's joint coordinates, still 1-based MATLAB pixels (no -1 shift), truncated toward zero to
  whole pixels (the official 982.759 is stored as 982); a joint the person lacks is (0, 0). ``visible`` is 1/0,
  0 for a missing joint; an empty or absent ``is_visible`` counts as 1 (in the real file upper neck and head
  top, which carry no flag, are always 1).
- ``center`` / ``scale``: Newell's crop adjustment is already in the file: center = objpos + (0, 15 x s) and
  scale = 1.25 x s, with s the official ``scale`` (person height / 200 px). In the real valid.h5,
  center_y - 12 x scale is a whole pixel for all 2958 people (the official objpos) and the first person's
  objpos (966, 340) is the official one.
- ``normalize``: 0.6 x the head-box diagonal, the box corners truncated to whole pixels first (the squared
  diagonal is a whole number for every real row).
- ``torsoangle``: 90 + the angle in degrees of thorax - pelvis (image y down), so 0 = upright torso; 0 when
  the x of either joint is 0, which is how a missing joint reads.
- ``index`` / ``person``: 0-based indices into ``annolist`` and that image's ``annorect``, stored as float64;
  every other field is float64 too, ``imgname`` is fixed-length bytes; rows are ordered by (index, person).

Splits: valid = the given (index, person) pairs (Tompson et al.'s 2958 people, shipped in
``datasets/data/mpii_valid_people.csv``); train = every other annotated person of the training images, single or
not, leaving out whole images that hold a validation person (the rule of pytorch-pose's gen_mpii.m, reported to
give 22246 people from the official file like the published train split; keeping the other people of those
images, as CPM's genJSON.m does, gives 25925); test = the ``single_person`` people of the test images, with
center/scale and no joints. A person enters train or valid only with objpos, scale and at least one joint.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import scipy.io

from datasets.skeleton import MPII
from storage.io import atomic_output, open_h5
from utils.errors import UserInputError

NUM_JOINTS = MPII.num_joints
PELVIS, THORAX = MPII.names.index("pelvis"), MPII.names.index("thorax")
CENTER_SHIFT = 15.0  # Newell: move the centre down 15 x scale px so that crops keep the feet
SCALE_FACTOR = 1.25  # Newell: widen the person box by a quarter
HEAD_FACTOR = 0.6  # PCKh reference = 0.6 x head-box diagonal (the MPII evaluation code's SC_BIAS)
VALID_PEOPLE_CSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mpii_valid_people.csv")


@dataclass(frozen=True)
class Release:
    """The parts of ``RELEASE`` the conversion reads; image ``i`` is ``annolist(i + 1)`` in MATLAB."""

    names: tuple[str, ...]  # image file name of each image
    is_train: np.ndarray  # (I,) bool, img_train
    rects: tuple[tuple[Any, ...], ...]  # annorect structs of each image (scipy mat_struct)
    single_person: tuple[tuple[int, ...], ...]  # 0-based annorect indices of the separated people


@dataclass(frozen=True)
class PeopleList:
    """A list of (image index, person index) pairs, 0-based, with the image names to check them against."""

    index: np.ndarray  # (N,) int
    person: np.ndarray  # (N,) int
    imgname: tuple[str, ...]
    source: str  # the file they came from, for messages


def as_list(value: Any) -> list[Any]:
    """A "maybe-array" field of ``loadmat(squeeze_me=True)`` as a list: [] if empty, [x] if squeezed to x."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def is_empty(value: Any) -> bool:
    """True for a field MATLAB left empty ([] or ''), or one the struct lacks (None)."""
    return value is None or (isinstance(value, np.ndarray) and value.size == 0) or (isinstance(value, str)
                                                                                 and not value.strip())


def get(struct: Any, name: str) -> Any:
    """Field ``name`` of a mat_struct, or None when the struct lacks it or it is empty."""
    value = getattr(struct, name, None)
    return None if is_empty(value) else value


def release_from_struct(release: Any, source: str) -> Release:
    """Read ``annolist``, ``img_train`` and ``single_person`` from the loaded ``RELEASE`` struct."""
    for name in ("annolist", "img_train", "single_person"):
        if not hasattr(release, name):
            raise UserInputError(f"{source}: RELEASE has no field '{name}' (expected the official MPII annotations)")
    annolist = as_list(release.annolist)
    is_train = np.atleast_1d(np.asarray(release.img_train)).ravel().astype(bool)
    singles = as_list(release.single_person) if len(annolist) != 1 else [release.single_person]
    if not (len(annolist) == len(is_train) == len(singles)):
        raise UserInputError(f"{source}: annolist, img_train and single_person have different lengths "
                             f"({len(annolist)}, {len(is_train)}, {len(singles)}; expected one entry per image)")
    names = tuple(str(get(get(a, "image"), "name") or "") for a in annolist)
    rects = tuple(tuple(as_list(get(a, "annorect"))) for a in annolist)
    single = tuple(tuple(int(p) - 1 for p in np.atleast_1d(s).ravel()) if not is_empty(s) else () for s in singles)
    return Release(names=names, is_train=is_train, rects=rects, single_person=single)


def check_mat_path(path: str, flag: str = "--mat") -> str:
    """Return ``path`` after checking that it names an existing .mat file (cheap, before the slow load)."""
    if not os.path.isfile(path):
        raise UserInputError(f"{flag}: file not found: {path} (expected mpii_human_pose_v1_u12_1.mat)")
    if not path.lower().endswith(".mat"):
        raise UserInputError(f"{flag}: expected a .mat file (mpii_human_pose_v1_u12_1.mat), got {path}")
    return path


def load_release(path: str, flag: str = "--mat") -> Release:
    """Load the official ``mpii_human_pose_v1_u12_1.mat``; one-line errors name ``flag``."""
    check_mat_path(path, flag)
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except (scipy.io.matlab.MatReadError, ValueError, OSError, NotImplementedError, TypeError):
        raise UserInputError(f"{flag}: cannot read {path} as a MATLAB file") from None
    if "RELEASE" not in mat:
        raise UserInputError(f"{flag}: {path} holds no RELEASE struct (expected the official MPII annotations)")
    return release_from_struct(mat["RELEASE"], path)


def person_box(rect: Any) -> tuple[np.ndarray, float] | None:
    """(center (2,) x, y original px, scale) with Newell's adjustment, or None without objpos or scale."""
    objpos, scale = get(rect, "objpos"), get(rect, "scale")
    x, y = get(objpos, "x"), get(objpos, "y")
    if scale is None or x is None or y is None:
        return None
    s = float(scale)
    return np.array([float(x), float(y) + CENTER_SHIFT * s]), SCALE_FACTOR * s


def visibility_flag(value: Any) -> int:
    """``is_visible`` as 0/1: stored as a number, a string '0'/'1', or empty (= visible, as in Newell's files)."""
    if is_empty(value):
        return 1
    if isinstance(value, str):
        return int(value.strip() != "0")
    return int(float(value) != 0)


def person_joints(rect: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(part (16, 2) 1-based original px truncated toward zero, visible (16,)), or None without joints.

    A joint the person lacks stays (0, 0) with visible 0; of repeated ids the first one counts.
    """
    points = as_list(get(get(rect, "annopoints"), "point"))
    if not points:
        return None
    part, visible, seen = np.zeros((NUM_JOINTS, 2)), np.zeros(NUM_JOINTS), np.zeros(NUM_JOINTS, bool)
    for point in points:
        joint, x, y = get(point, "id"), get(point, "x"), get(point, "y")
        if joint is None or x is None or y is None:
            continue
        joint = int(joint)
        if not 0 <= joint < NUM_JOINTS:
            raise UserInputError(f"--mat: joint id {joint} outside 0..{NUM_JOINTS - 1} (expected the MPII joints)")
        if not seen[joint]:
            part[joint] = np.trunc([float(x), float(y)])
            visible[joint] = visibility_flag(getattr(point, "is_visible", None))
            seen[joint] = True
    return (part, visible) if seen.any() else None


def head_normalize(rect: Any) -> float | None:
    """PCKh reference in original px: 0.6 x the diagonal of the head box, corners truncated to whole px."""
    corners = [get(rect, k) for k in ("x1", "y1", "x2", "y2")]
    if any(c is None for c in corners):
        return None
    x1, y1, x2, y2 = (int(float(c)) for c in corners)
    return HEAD_FACTOR * float(np.linalg.norm([y2 - y1, x2 - x1]))


def torso_angle(part: np.ndarray) -> float:
    """Degrees from vertical of pelvis -> thorax (``part`` (16, 2), image y down): 0 = upright, 0 if missing."""
    pelvis, thorax = part[PELVIS], part[THORAX]
    if pelvis[0] == 0 or thorax[0] == 0:
        return 0.0
    return 90.0 + float(np.arctan2(thorax[1] - pelvis[1], thorax[0] - pelvis[0])) * 180.0 / np.pi


def is_annotated(release: Release, index: int, person: int) -> bool:
    """Whether person ``person`` of training image ``index`` has objpos, scale and at least one joint."""
    rect = release.rects[index][person]
    return person_box(rect) is not None and person_joints(rect) is not None


def check_valid_people(release: Release, valid: PeopleList) -> None:
    """Every listed person must exist, be annotated in a training image, and the image names must agree."""
    for i, p, name in zip(valid.index.tolist(), valid.person.tolist(), valid.imgname, strict=True):
        where = f"{valid.source}: validation person (index {i}, person {p})"
        if not (0 <= i < len(release.names) and 0 <= p < len(release.rects[i])):
            raise UserInputError(f"{where} is not in the .mat (expected the same MPII release)")
        if release.names[i] != name:
            raise UserInputError(f"{where}: image is '{release.names[i]}' in the .mat, '{name}' in the list "
                                 "(expected the same MPII release)")
        if not (release.is_train[i] and is_annotated(release, i, p)):
            raise UserInputError(f"{where} is not an annotated person of a training image in the .mat")


def split_people(release: Release, valid: PeopleList) -> dict[str, list[tuple[int, int]]]:
    """(image index, person index) pairs of each split, ordered by image then person (see the module doc)."""
    check_valid_people(release, valid)
    valid_pairs = sorted(set(zip(valid.index.tolist(), valid.person.tolist(), strict=True)))
    valid_images = {i for i, _ in valid_pairs}
    train = [(i, p) for i in np.flatnonzero(release.is_train).tolist() if i not in valid_images
             for p in range(len(release.rects[i])) if is_annotated(release, i, p)]
    test = []
    for i in np.flatnonzero(~release.is_train).tolist():
        for p in release.single_person[i]:
            if not 0 <= p < len(release.rects[i]):
                raise UserInputError(f"--mat: single_person of image {i} names person {p + 1}, "
                                     f"which has no annorect (expected 1..{len(release.rects[i])})")
            if person_box(release.rects[i][p]) is not None:
                test.append((i, p))
    return {"train": train, "valid": valid_pairs, "test": test}


def split_arrays(release: Release, people: list[tuple[int, int]], with_joints: bool) -> dict[str, np.ndarray]:
    """The h5 datasets of one split (layout in the module doc); ``with_joints`` adds part, visible, etc."""
    n = len(people)
    names = [release.names[i].encode() for i, _ in people]
    out = {
        "index": np.array([i for i, _ in people], np.float64),
        "person": np.array([p for _, p in people], np.float64),
        "imgname": np.array(names, dtype=f"S{max([len(s) for s in names], default=1)}"),
        "center": np.zeros((n, 2)),
        "scale": np.zeros(n),
    }
    if with_joints:
        out.update(part=np.zeros((n, NUM_JOINTS, 2)), visible=np.zeros((n, NUM_JOINTS)), normalize=np.zeros(n),
                   torsoangle=np.zeros(n))
    for row, (i, p) in enumerate(people):
        rect = release.rects[i][p]
        out["center"][row], out["scale"][row] = person_box(rect)
        if with_joints:
            out["part"][row], out["visible"][row] = person_joints(rect)
            normalize = head_normalize(rect)
            if normalize is None:
                raise UserInputError(f"--mat: annotated person (index {i}, person {p}) has no head box x1..y2 "
                                     "(expected one for every annotated person, the PCKh reference)")
            out["normalize"][row], out["torsoangle"][row] = normalize, torso_angle(out["part"][row])
    return out


def build_splits(release: Release, valid: PeopleList) -> dict[str, dict[str, np.ndarray]]:
    """The arrays of train.h5, valid.h5 and test.h5."""
    people = split_people(release, valid)
    return {split: split_arrays(release, pairs, with_joints=split != "test") for split, pairs in people.items()}


def read_valid_csv(path: str = VALID_PEOPLE_CSV) -> PeopleList:
    """The validation people of a CSV with header ``index,person,imgname`` (0-based indices)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        index = np.array([int(r["index"]) for r in rows], np.int64)
        person = np.array([int(r["person"]) for r in rows], np.int64)
        names = tuple(r["imgname"] for r in rows)
    except (OSError, KeyError, ValueError, TypeError):
        raise UserInputError(f"cannot read {path} as a CSV of index,person,imgname rows") from None
    return PeopleList(index=index, person=person, imgname=names, source=path)


def read_valid_h5(path: str) -> PeopleList:
    """The validation people of a stacked-hourglass ``valid.h5`` (its ``index``, ``person``, ``imgname``)."""
    with open_h5(path, "a stacked-hourglass valid.h5", "--valid_from") as f:
        missing = [k for k in ("index", "person", "imgname") if k not in f]
        if missing:
            raise UserInputError(f"--valid_from: {path} lacks {', '.join(missing)} (expected a valid.h5 with "
                                 "index, person and imgname)")
        index, person, names = f["index"][()], f["person"][()], f["imgname"][()]
    if not (index.ndim == person.ndim == names.ndim == 1 and len(index) == len(person) == len(names)):
        raise UserInputError(f"--valid_from: {path}: index, person and imgname are not vectors of one length")
    names = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in names)
    return PeopleList(index=np.rint(index).astype(np.int64), person=np.rint(person).astype(np.int64),
                      imgname=names, source=path)


def write_h5(path: str, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` as datasets of a new h5 file (attribute name='mpii'), atomically: temp file, then rename."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["name"] = "mpii"
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path
