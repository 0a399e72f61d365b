"""MPII test-set submission: predictions of ``annot/test.h5`` -> ``pred_keypoints_mpii.mat``.

The MPII evaluation (``evaluatePCKh.m`` of the official toolkit) loads the variable ``pred`` from
``pred_keypoints_mpii.mat``: a struct array shaped like ``RELEASE.annolist`` restricted to the test images,
in which ``pred(i).annorect(r).annopoints.point`` holds one struct per joint with ``id`` (0-15, MPII joint
order), ``x`` and ``y``. Coordinates are those of the official annotations, MATLAB's (the top-left pixel's centre is
(1, 1)): ``write_mpii_submission`` takes 0-based predictions and adds ``MATLAB_ORIGIN``.

Two layouts:

- from ``test.h5`` alone: one entry per image that holds a test person (ascending official image index), with
  ``image.name`` and one ``annorect`` entry per test person of that image (ascending official person index);
- with the official release (``--mpii_mat``): the layout the evaluation reads, as the toolkit's own
  preparation builds it: every test image of ``RELEASE.annolist`` in order, every one of its ``annorect``
  entries with ``objpos`` and ``scale`` copied (the evaluation lines people up by them), and the joints
  filled in for the predicted people. ``evaluatePCKh.m`` asserts one entry per test image, so only this
  layout can be submitted as it is.
"""

from __future__ import annotations

import numpy as np
import scipy.io

from datasets.mpii import MATLAB_ORIGIN, MPIIDataset
from datasets.mpii_official import Release, get, load_release
from storage.io import atomic_output
from utils.errors import UserInputError

SUBMISSION_NAME = "pred_keypoints_mpii.mat"
EMPTY = np.zeros((0, 0))  # MATLAB's []


def struct_array(records: list[dict], fields: tuple[str, ...]) -> np.ndarray:
    """A 1 x N MATLAB struct array for ``scipy.io.savemat``; a field a record lacks is left empty ([])."""
    out = np.empty((1, len(records)), dtype=[(f, "O") for f in fields])
    for k, record in enumerate(records):
        for f in fields:
            out[0, k][f] = record.get(f, EMPTY)
    return out


def annopoints(joints: np.ndarray) -> dict:
    """``annopoints`` of one person: ``point`` with ``id`` (0-based joint), ``x``, ``y`` for joints (J, 2)."""
    points = [{"id": float(j), "x": float(x), "y": float(y)} for j, (x, y) in enumerate(joints)]
    return {"point": struct_array(points, ("id", "x", "y"))}


def _group(index: np.ndarray, person: np.ndarray) -> dict[int, list[tuple[int, int]]]:
    """image index -> [(person index, row)], both ascending."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for row in np.lexsort((person, index)).tolist():
        groups.setdefault(int(index[row]), []).append((int(person[row]), row))
    for image, people in groups.items():
        persons = [p for p, _ in people]
        if len(set(persons)) != len(persons):
            raise UserInputError(f"test.h5 lists a person of image index {image} twice (expected each "
                                 "(index, person) once)")
    return groups


def annolist_from_people(preds: np.ndarray, index: np.ndarray, person: np.ndarray,
                         names: list[str]) -> np.ndarray:
    """The layout from ``test.h5`` alone (module doc): ``preds`` (N, J, 2), ``index``/``person`` (N,) 0-based,
    ``names`` (N,) image file names."""
    entries = []
    for people in _group(index, person).values():
        rects = [{"annopoints": annopoints(preds[row])} for _, row in people]
        entries.append({"image": {"name": names[people[0][1]]}, "annorect": struct_array(rects, ("annopoints",))})
    return struct_array(entries, ("image", "annorect"))


def annolist_from_release(preds: np.ndarray, index: np.ndarray, person: np.ndarray, names: list[str],
                          release: Release, source: str) -> np.ndarray:
    """The official layout (module doc) from the loaded ``release``; every predicted person must be a person
    of a test image of it, with the same image name (else a one-line error naming ``source``)."""
    groups = _group(index, person)
    for image, people in groups.items():
        row = people[0][1]
        where = f"--mpii_mat {source}: test person (index {image}, person {people[-1][0]})"
        if not 0 <= image < len(release.names) or release.is_train[image] or people[-1][0] >= len(release.rects[image]):
            raise UserInputError(f"{where} is not a person of a test image there (expected the release test.h5 was "
                                 "made from)")
        if release.names[image] != names[row]:
            raise UserInputError(f"{where}: image is '{release.names[image]}' there, '{names[row]}' in test.h5 "
                                 "(expected the release test.h5 was made from)")
    entries = []
    for image in np.flatnonzero(~release.is_train).tolist():
        predicted = dict(groups.get(image, []))
        rects = []
        for p, rect in enumerate(release.rects[image]):
            objpos, scale = get(rect, "objpos"), get(rect, "scale")
            x, y = (get(objpos, "x"), get(objpos, "y")) if objpos is not None else (None, None)
            rects.append({
                "objpos": {"x": float(x), "y": float(y)} if x is not None and y is not None else EMPTY,
                "scale": float(scale) if scale is not None else EMPTY,
                "annopoints": annopoints(preds[predicted[p]]) if p in predicted else EMPTY,
            })
        annorect = struct_array(rects, ("objpos", "scale", "annopoints")) if rects else EMPTY
        entries.append({"image": {"name": release.names[image]}, "annorect": annorect})
    return struct_array(entries, ("image", "annorect"))


def write_mpii_submission(path: str, preds: np.ndarray, rows: np.ndarray, dataset: MPIIDataset,
                          release_path: str | None = None) -> str:
    """Write ``pred_keypoints_mpii.mat`` (variable ``pred``) atomically for the predicted ``rows`` (N,) of
    the split, ``preds`` (N, J, 2) in 0-based original px; ``release_path``: the official .mat for the
    layout the evaluation reads (module doc). Returns ``path``."""
    rows = np.asarray(rows, np.int64)
    preds = np.asarray(preds, np.float64) + MATLAB_ORIGIN
    index, person = dataset.official_ids()
    if len(index) != len(dataset) or len(person) != len(dataset):
        raise UserInputError(f"MPII {dataset.split} split: index/person have {len(index)}/{len(person)} rows, "
                             f"expected one per person ({len(dataset)})")
    names = [dataset.ann.image_names[r] for r in rows.tolist()]
    if release_path is None:
        annolist = annolist_from_people(preds, index[rows], person[rows], names)
    else:
        release = load_release(release_path, "--mpii_mat")
        annolist = annolist_from_release(preds, index[rows], person[rows], names, release, release_path)
    with atomic_output(path) as tmp:
        scipy.io.savemat(tmp, {"pred": annolist}, do_compression=True, oned_as="row")
    return path
