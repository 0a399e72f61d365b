"""Convert the official MPII annotations into the stacked-hourglass files ``annot/{train,valid,test}.h5``.

    python -m scripts.prepare_mpii --mat mpii_human_pose_v1_u12_1.mat --out data/mpii/annot
    python -m scripts.prepare_mpii --mat ... --out ... --valid_from other/valid.h5 --overwrite

The validation people are Tompson et al.'s 2958 (datasets/data/mpii_valid_people.csv) unless --valid_from names a
valid.h5 to take them from. Conventions and split rules: datasets/mpii_official.py.
"""

from __future__ import annotations

import argparse
import os

from cli.common import add_overwrite_flag
from datasets.mpii_official import (
    build_splits,
    check_mat_path,
    load_release,
    read_valid_csv,
    read_valid_h5,
    write_h5,
)
from storage.io import check_replaceable, ensure_writable_dir, replacing_note
from utils.errors import exit_on_user_error, refuse_empty

SPLITS = ("train", "valid", "test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mat", required=True, help="the official mpii_human_pose_v1_u12_1.mat")
    p.add_argument("--out", required=True, help="folder to write train.h5, valid.h5 and test.h5 in (<root>/annot)")
    p.add_argument("--valid_from", default=None, help="take the validation (index, person) pairs from this valid.h5")
    add_overwrite_flag(p, "the h5 files in --out")
    return p.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, str]:
    """Write the three files; returns split -> path."""
    args = refuse_empty(parse_args(argv))
    check_mat_path(args.mat)
    valid = read_valid_h5(args.valid_from) if args.valid_from else read_valid_csv()
    paths = {split: os.path.join(args.out, f"{split}.h5") for split in SPLITS}
    # --valid_from is read whole before anything is written, so it may be one of the outputs
    replaced = check_replaceable(list(paths.values()), [args.mat], "--out", args.overwrite)
    release = load_release(args.mat)
    splits = build_splits(release, valid)
    ensure_writable_dir(args.out, "--out")
    if replaced:
        print(replacing_note(replaced))
    for split, arrays in splits.items():
        write_h5(paths[split], arrays)
        print(f"{split}: {len(arrays['index'])} people -> {paths[split]}")
    return paths


if __name__ == "__main__":
    main()
