"""scripts/prepare_mpii.py: the official MPII struct -> annot/{train,valid,test}.h5 in Newell's layout."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import REPO

from datasets.mpii import load_mpii_annotations
from datasets.mpii_official import read_valid_csv, read_valid_h5, visibility_flag
from inference.submission import EMPTY, struct_array
from scripts import prepare_mpii

SCRIPT = ["-m", "scripts.prepare_mpii"]  # run from REPO
RECT_FIELDS = ("x1", "y1", "x2", "y2", "scale", "objpos", "annopoints")


def points(joints: list[tuple]) -> dict:
    """annopoints of (id, x, y[, is_visible]) tuples; a tuple without a flag leaves is_visible out of the record."""
    records = [dict(id=j[0], x=j[1], y=j[2], **({"is_visible": j[3]} if len(j) > 3 else {})) for j in joints]
    return {"point": struct_array(records, ("id", "x", "y", "is_visible"))}


def rect(head=None, objpos=None, scale=None, joints=None) -> dict:
    r = {}
    if head is not None:
        r.update(zip(("x1", "y1", "x2", "y2"), head, strict=True))
    if objpos is not None:
        r["objpos"] = {"x": objpos[0], "y": objpos[1]}
    if scale is not None:
        r["scale"] = scale
    if joints is not None:
        r["annopoints"] = points(joints)
    return r


def save_release(path, images: list[tuple[str, int, list[dict], list[int]]]) -> str:
    """Write a RELEASE struct in the official schema: images are (name, img_train, annorects, single_person)."""
    annolist = struct_array(
        [{"image": {"name": name}, "annorect": struct_array(rects, RECT_FIELDS) if rects else EMPTY}
         for name, _, rects, _ in images], ("image", "annorect", "frame_sec", "vididx"))
    single = np.empty((len(images), 1), dtype=object)
    for i, (_, _, _, people) in enumerate(images):
        single[i, 0] = np.array(people, np.float64).reshape(-1, 1) if people else EMPTY
    release = {"annolist": annolist, "img_train": np.array([[t for _, t, _, _ in images]], np.uint8),
               "single_person": single, "act": EMPTY, "video_list": EMPTY}
    scipy.io.savemat(str(path), {"RELEASE": release})
    return str(path)


def read_h5(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        assert f.attrs["name"] == "mpii"
        return {k: f[k][()] for k in f}


# A hand-built release. Image 0 (train): person 0 is single and complete, with is_visible as a number, a string
# and empty; person 1 is not single_person and lacks joints. Image 1 (train) holds validation person 0 and an
# annotated person 1 who stays out of train with it. Image 2 (test): single_person = 1 and 3 (1-based) but 3 has no
# scale. Image 3 (train): people without objpos, without scale, without annopoints. Image 4 (train): one person
# with one joint (a struct array of one squeezes to a scalar struct). Image 5 (train): nobody.
FULL = [(j, 100.0 + 10 * j + 0.7, 50.0 + 5 * j, v) for j, v in
        zip(range(16), [1, "1", EMPTY, 0, "0", 1, 1, 0, EMPTY, EMPTY, "1", "0", 1, 1, 0, 1], strict=True)]
PARTIAL = [(9, 40.0, -3.6, "1"), (6, 12.2, 80.0, 0), (7, 14.0, 30.0), (2, 9.9, 70.5, EMPTY)]
IMAGES = [
    ("a.jpg", 1, [rect((90.9, 20.0, 120.0, 60.5), (150, 120), 2.0, FULL),
                  rect((10, 10, 22, 26), (20, 60), 0.5, PARTIAL)], [1]),
    ("bb.jpg", 1, [rect((0, 0, 30, 40), (300, 200), 1.0, [(0, 5, 6, 1), (7, 50, 40, 1), (6, 50, 80, 1)]),
                   rect((0, 0, 3, 4), (30, 20), 1.0, [(3, 7, 8, 0)])], [1, 2]),
    ("test.jpg", 0, [rect(objpos=(400, 300), scale=3.0), rect(objpos=(40, 30), scale=1.0),
                     rect(objpos=(10, 10))], [1, 3]),
    ("c.jpg", 1, [rect((0, 0, 3, 4), None, 1.0, [(3, 7, 8, 1)]), rect((0, 0, 3, 4), (5, 5), None, [(3, 7, 8, 1)]),
                  rect((0, 0, 3, 4), (5, 5), 1.0)], []),
    ("d.jpg", 1, [rect((1, 2, 4, 6), (7, 8), 4.0, [(13, 3.5, 4.5, 0)])], [1]),
    ("e.jpg", 1, [], []),
]


@pytest.fixture
def official(tmp_path):
    """The hand-built .mat, and a valid list naming person 0 of image 1."""
    mat = save_release(tmp_path / "mpii_human_pose_v1_u12_1.mat", IMAGES)
    valid_from = tmp_path / "valid_from.h5"
    with h5py.File(valid_from, "w") as f:
        f["index"], f["person"], f["imgname"] = [1.0], [0.0], [b"bb.jpg"]
    return mat, str(valid_from)


def test_visibility_flag_reads_number_string_and_empty():
    assert [visibility_flag(v) for v in (1, 0, "1", "0", " 0", np.uint8(1), 0.0, EMPTY, "", None)] == \
        [1, 0, 1, 0, 0, 1, 0, 1, 1, 1]


def test_every_field_of_every_split(official, tmp_path):
    mat, valid_from = official
    out = tmp_path / "annot"
    paths = prepare_mpii.main(["--mat", mat, "--out", str(out), "--valid_from", valid_from])
    assert sorted(os.listdir(out)) == ["test.h5", "train.h5", "valid.h5"]
    train, valid, test = (read_h5(paths[s]) for s in ("train", "valid", "test"))
    joint_keys = {"index", "person", "imgname", "center", "scale", "part", "visible", "normalize", "torsoangle"}
    assert set(train) == set(valid) == joint_keys
    assert set(test) == {"index", "person", "imgname", "center", "scale"}  # no joints for test people
    for arrays in (train, valid, test):
        assert all(a.dtype == np.float64 for k, a in arrays.items() if k != "imgname")
        assert arrays["imgname"].dtype.kind == "S"

    # train: image 0's two people (single or not), image 4's; image 1 holds a validation person, so none of it
    np.testing.assert_array_equal(train["index"], [0, 0, 4])
    np.testing.assert_array_equal(train["person"], [0, 1, 0])
    assert train["imgname"].tolist() == [b"a.jpg", b"a.jpg", b"d.jpg"]
    # center = objpos + (0, 15 s), scale = 1.25 s
    np.testing.assert_array_equal(train["center"], [[150, 150], [20, 67.5], [7, 68]])
    np.testing.assert_array_equal(train["scale"], [2.5, 0.625, 5.0])
    assert train["part"].shape == (3, 16, 2) and train["visible"].shape == (3, 16)
    # person 0: 1-based .mat px truncated toward zero (100.7 -> 100); is_visible 0/'0' -> 0, 1/'1'/empty -> 1
    np.testing.assert_array_equal(train["part"][0], [[100 + 10 * j, 50 + 5 * j] for j in range(16)])
    np.testing.assert_array_equal(train["visible"][0], [1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1])
    # person 1: missing joints are (0, 0) and not visible; -3.6 -> -3; is_visible left empty -> visible
    part1, vis1 = np.zeros((16, 2)), np.zeros(16)
    part1[[9, 6, 7, 2]] = [[40, -3], [12, 80], [14, 30], [9, 70]]
    vis1[[9, 7, 2]] = 1
    np.testing.assert_array_equal(train["part"][1], part1)
    np.testing.assert_array_equal(train["visible"][1], vis1)
    np.testing.assert_array_equal(train["part"][2][13], [3, 4])
    assert train["visible"][2].sum() == 0 and np.count_nonzero(train["part"][2]) == 2
    # normalize: 0.6 x diagonal of the head box with corners truncated (90.9 -> 90, 60.5 -> 60)
    np.testing.assert_allclose(train["normalize"], [0.6 * 50, 0.6 * 20, 0.6 * 5])
    # torso angle: thorax (170, 85) right of and below pelvis (160, 80) -> 90 + atan2(5, 10); 0 = upright
    np.testing.assert_allclose(train["torsoangle"], [90 + np.degrees(np.arctan2(5, 10)),
                                                     90 + np.degrees(np.arctan2(30 - 80, 14 - 12)), 0.0])

    np.testing.assert_array_equal(valid["index"], [1])
    np.testing.assert_array_equal(valid["person"], [0])
    assert valid["imgname"].tolist() == [b"bb.jpg"]
    np.testing.assert_array_equal(valid["center"], [[300, 215]])
    np.testing.assert_array_equal(valid["scale"], [1.25])
    np.testing.assert_array_equal(valid["part"][0][[0, 6, 7]], [[5, 6], [50, 80], [50, 40]])
    assert np.count_nonzero(valid["part"][0]) == 6 and valid["visible"][0].sum() == 3
    np.testing.assert_allclose(valid["normalize"], [30.0])
    np.testing.assert_allclose(valid["torsoangle"], [0.0])  # thorax straight above pelvis

    # test: single_person 1 of image 2 (person 3 has no scale, person 2 is not single)
    np.testing.assert_array_equal(test["index"], [2])
    np.testing.assert_array_equal(test["person"], [0])
    assert test["imgname"].tolist() == [b"test.jpg"]
    np.testing.assert_array_equal(test["center"], [[400, 345]])
    np.testing.assert_array_equal(test["scale"], [3.75])

    # the repo's loader reads all three
    for split, arrays in (("train", train), ("valid", valid), ("test", test)):
        ann = load_mpii_annotations(paths[split], labelled=split != "test")
        assert ann.image_names == [s.decode() for s in arrays["imgname"]]
        assert ann.joints.shape == (len(arrays["index"]), 16, 2)
    ann = load_mpii_annotations(paths["train"])
    np.testing.assert_array_equal(ann.annotated[1], np.any(part1 != 0, axis=1))
    np.testing.assert_array_equal(ann.ref_lengths, train["normalize"])


def test_valid_people_must_match_the_release(official, tmp_path, capsys):
    mat, _ = official
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["index"], f["person"], f["imgname"] = [1.0], [0.0], [b"other.jpg"]
    with pytest.raises(SystemExit) as exc:
        prepare_mpii.main(["--mat", mat, "--out", str(tmp_path / "annot"), "--valid_from", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.h5" in err and "'other.jpg'" in err
    assert not (tmp_path / "annot" / "train.h5").exists()


def test_shipped_valid_people_are_the_real_files(mpii_root):
    shipped, real = read_valid_csv(), read_valid_h5(os.path.join(mpii_root, "annot", "valid.h5"))
    assert len(shipped.index) == 2958
    np.testing.assert_array_equal(shipped.index, real.index)
    np.testing.assert_array_equal(shipped.person, real.person)
    assert shipped.imgname == real.imgname


def two_squares(total: int) -> tuple[int, int]:
    """Whole (dx, dy) with dx^2 + dy^2 = total: a head box with that squared diagonal."""
    dx = np.arange(int(np.sqrt(total)) + 1)
    dy = np.rint(np.sqrt(total - dx**2))
    k = np.flatnonzero(dx**2 + dy**2 == total)[0]
    return int(dx[k]), int(dy[k])


def release_from_valid_h5(real: dict[str, np.ndarray]) -> list[tuple[str, int, list[dict], list[int]]]:
    """Invert the conversion: a RELEASE whose annotations turn into the given valid.h5's rows.

    objpos = (cx, cy - 12 scale) and official scale = scale / 1.25; joints get a fraction away from zero (that
    truncation removes) and is_visible cycles through number, string and empty; the head box corners are
    whole px + 0.5 with sides whose squared diagonal is (normalize / 0.6)^2; unlisted people are empty rects.
    """
    index, person = real["index"].astype(int), real["person"].astype(int)
    images = [("", 1, [], []) for _ in range(index.max() + 1)]
    flags = {1: [1, "1", EMPTY], 0: [0, "0"]}
    for row, (i, p) in enumerate(zip(index, person, strict=True)):
        name, _, rects, _ = images[i]
        rects = rects + [{} for _ in range(p + 1 - len(rects))]
        cx, cy = real["center"][row]
        scale = real["scale"][row] / 1.25
        dx, dy = two_squares(int(round((real["normalize"][row] / 0.6) ** 2)))
        joints = []
        for j in range(16)[::-1]:  # any order: points are matched by id
            x, y = real["part"][row, j]
            if x == 0 and y == 0:
                continue
            v = int(real["visible"][row, j])
            joints.append((j, x + 0.25 * np.sign(x), y + 0.25 * np.sign(y), flags[v][(row + j) % len(flags[v])]))
        rects[p] = rect((10.5, 20.5, 10.5 + dx, 20.5 + dy), (cx, round(cy - 12 * real["scale"][row])), scale, joints)
        images[i] = (real["imgname"][row].decode(), 1, rects, [])
    return images


def test_reproduces_the_real_valid_h5(mpii_root, tmp_path):
    """The first 500 real people (images 0..4777: a full-length annolist would make the .mat slow to write)."""
    real = {k: v[:500] for k, v in read_h5(os.path.join(mpii_root, "annot", "valid.h5")).items()}
    mat = save_release(tmp_path / "mpii_human_pose_v1_u12_1.mat", release_from_valid_h5(real))
    valid_from = tmp_path / "valid_from.h5"
    with h5py.File(valid_from, "w") as f:
        for key in ("index", "person", "imgname"):
            f[key] = real[key]
    paths = prepare_mpii.main(["--mat", mat, "--out", str(tmp_path / "annot"), "--valid_from", str(valid_from)])
    ours = read_h5(paths["valid"])
    assert set(ours) == set(real)
    for key in real:
        assert ours[key].dtype == real[key].dtype and ours[key].shape == real[key].shape, key
        if key == "imgname":
            assert ours[key].tolist() == real[key].tolist()
        else:
            np.testing.assert_allclose(ours[key], real[key], rtol=0, atol=1e-6, err_msg=key)
    assert len(read_h5(paths["train"])["index"]) == 0  # every annotated image here holds a validation person


@pytest.mark.slow  # the script run as a process, twice
def test_cli_refuses_to_overwrite_and_reports_bad_input_in_one_line(official, tmp_path, capsys):
    mat, valid_from = official
    out = tmp_path / "annot"
    first = subprocess.run([sys.executable, *SCRIPT, "--mat", mat, "--out", str(out), "--valid_from", valid_from],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "valid: 1 people" in first.stdout
    missing = subprocess.run([sys.executable, *SCRIPT, "--mat", str(tmp_path / "nope.mat"), "--out", str(out)],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert missing.stderr.startswith("error: --mat: file not found") and "Traceback" not in missing.stderr

    main = prepare_mpii.main
    before = {p: os.path.getmtime(out / p) for p in os.listdir(out)}

    def error_line(*args: str) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
        return err

    assert "--overwrite" in error_line("--mat", mat, "--out", str(out), "--valid_from", valid_from)
    assert {p: os.path.getmtime(out / p) for p in os.listdir(out)} == before
    main(["--mat", mat, "--out", str(out), "--valid_from", valid_from, "--overwrite"])
    assert sorted(os.listdir(out)) == ["test.h5", "train.h5", "valid.h5"]  # no temp files left behind

    not_mat = tmp_path / "annotations.txt"
    not_mat.write_text("x")
    no_release = tmp_path / "other.mat"
    scipy.io.savemat(str(no_release), {"joints": np.zeros((3, 14, 2))})
    garbage = tmp_path / "garbage.mat"
    garbage.write_text("not a MATLAB file")
    for path, expected in ((not_mat, "expected a .mat file"), (no_release, "no RELEASE struct"),
                           (garbage, "cannot read")):
        assert expected in error_line("--mat", str(path), "--out", str(tmp_path / "o3"))
    assert "--valid_from: file not found" in error_line("--mat", mat, "--out", str(tmp_path / "o3"),
                                                        "--valid_from", str(tmp_path / "none.h5"))
    assert not (tmp_path / "o3").exists()
