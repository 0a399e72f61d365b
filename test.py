"""Evaluate a checkpoint (or score a predictions file) on a dataset split: PCKh@0.5 / PCK@0.2.

    python test.py --checkpoint trainmodel/run/best.pt --dataset lspet --path DIR --split val --output out/
    python test.py --predictions preds.h5 --dataset mpii --path DIR --split valid --output out/
    python test.py --checkpoint best.pt --dataset mpii --path DIR --split test --output out/ \
        --mpii_mat mpii_human_pose_v1_u12_1.mat

A split without joint labels (MPII's test split) has no metric: its predictions are written, and for MPII
also the submission file pred_keypoints_mpii.mat (inference/submission.py). A file already in --output is
replaced only with --overwrite, and named first.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from checkpoint import fallback_note
from cli.common import add_inference_flags, add_overwrite_flag
from config import load_config
from datasets import DATASETS, DEFAULT_VAL_SPLIT, build_dataset
from datasets.mpii_official import check_mat_path
from inference.evaluate import evaluate_checkpoint
from inference.scoring import (
    describe_unusable,
    read_predictions,
    report,
    score_predictions,
    write_metrics,
    write_predictions,
)
from inference.submission import SUBMISSION_NAME, write_mpii_submission
from reporting.plots import plot_pck_curve, save_prediction_pictures
from storage.io import check_replaceable, ensure_writable_dir, replacing_note, some_names
from utils.errors import OneLineExit, UserInputError, exit_on_user_error, refuse_empty


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="model checkpoint (.pt) from train_supervised.py or train_adversarial.py")
    src.add_argument("--predictions", help="h5 file with dataset 'preds' (N x J x 2, original-image px in the "
                     "frame of the dataset's annotation files, as test.py writes predictions.h5)")
    p.add_argument("--dataset", default="synthetic", help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("--path", default=None, help="dataset directory (not needed for synthetic)")
    p.add_argument("--split", default=None, help="split to evaluate (default: the dataset's val/test split)")
    p.add_argument("--output", required=True, help="directory for metrics.json, predictions.h5 and pictures")
    add_overwrite_flag(p, "files already in --output (an earlier test's)")
    p.add_argument("--alpha", type=float, default=None,
                   help="PCK threshold in (0, 1], a fraction of the reference length (default: 0.5 for PCKh, 0.2 "
                        "for PCK)")
    add_inference_flags(p)
    p.add_argument("--max_samples", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--batch_size", type=int, default=32, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--num_pictures", type=int, default=8, help="prediction pictures to write")
    p.add_argument("--mpii_mat", default=None,
                   help="MPII --split test: the official mpii_human_pose_v1_u12_1.mat, to write the submission in "
                        "the layout the MPII evaluation reads (every test image and person of the release)")
    return p.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    """Run the evaluation and return the metrics record."""
    args = refuse_empty(parse_args(argv))
    split = args.split or DEFAULT_VAL_SPLIT.get(args.dataset, "val")
    if args.max_samples is not None and args.max_samples < 1:
        raise UserInputError(f"--max_samples: must be at least 1, got {args.max_samples}")
    if args.batch_size < 1:
        raise UserInputError(f"--batch_size: must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise UserInputError(f"--workers: {args.workers}; expected 0 (this process) or more")
    if args.num_pictures < 0:  # a negative count would slice off the last samples instead (and skip the check below)
        raise UserInputError(f"--num_pictures: must be 0 (none) or more, got {args.num_pictures}")
    if args.alpha is not None and not 0 < args.alpha <= 1:  # NaN fails both
        raise UserInputError(f"--alpha: {args.alpha:g} is not a threshold; expected a fraction of the reference "
                             f"length in (0, 1], e.g. 0.5 for PCKh@0.5, 0.2 for PCK@0.2")
    submission = args.dataset == "mpii" and split == "test"
    if args.mpii_mat is not None:
        if not submission:
            raise UserInputError("--mpii_mat: only for --dataset mpii --split test (the submission file)")
        check_mat_path(args.mpii_mat, "--mpii_mat")
    replaced = check_replaceable(planned_outputs(args, submission), [args.checkpoint or args.predictions],
                                 "--output", args.overwrite)
    created = not os.path.exists(args.output)
    outdir = ensure_writable_dir(args.output, "--output")  # early: a folder we cannot write fails before the work
    if replaced:
        print(replacing_note(replaced))
    try:
        result, pictures = evaluate_and_write(args, split, submission, outdir)
    except OneLineExit:  # a refusal or a stop signal
        if created and not os.listdir(outdir):  # a check failed before anything was written: leave no trace
            os.rmdir(outdir)
        raise
    remove_stale_pictures(replaced, pictures, outdir)
    return result


def planned_outputs(args: argparse.Namespace, submission: bool) -> list[str]:
    """The files this run may write into --output (pictures: those already in pictures/, as new ones would
    be mixed with them)."""
    names = ["metrics.json"] + (["predictions.h5", "pck_curve.png"] if args.checkpoint else []) \
        + ([SUBMISSION_NAME] if submission else [])
    paths = [os.path.join(args.output, n) for n in names]
    pictures = os.path.join(args.output, "pictures")
    if args.checkpoint and args.num_pictures > 0 and os.path.isdir(pictures):
        # a folder inside pictures/ is never written to, so it is neither named nor removed
        paths += sorted(p for p in (os.path.join(pictures, n) for n in os.listdir(pictures)) if not os.path.isdir(p))
    return paths


def remove_stale_pictures(replaced: list[str], written: list[str], outdir: str) -> None:
    """Remove the earlier pictures that were named as replaced (under --overwrite) but not written again, as
    with fewer --num_pictures than before: otherwise pictures/ would mix two runs' pictures. Called only
    after every file of the run is written, so a failed run leaves the earlier pictures."""
    folder, kept = os.path.join(outdir, "pictures"), set(written)
    stale = [p for p in replaced if os.path.dirname(p) == folder and p not in kept]
    for path in stale:
        os.remove(path)
    if stale:
        print(f"removed {len(stale)} earlier picture{'s' if len(stale) > 1 else ''} not written again: "
              f"{some_names(stale)}")


def check_usable(result: dict, source: str) -> None:
    """Stop when no scored joint has a usable prediction (a broken file or model, not a poor one); otherwise
    say how many are scored as misses (the official evaluations' convention for a missing prediction)."""
    unusable = result.get("unusable_predictions")
    if unusable is None:
        return
    if unusable["joints"] == unusable["scored_joints"]:
        raise UserInputError(f"{source}: no scored joint has a usable prediction: {describe_unusable(unusable)}")
    print(f"note: {describe_unusable(unusable)}: scored as misses, as the official MPII and LSP evaluations score "
          f"a joint without a prediction (metrics.json: unusable_predictions)")


def evaluate_and_write(args: argparse.Namespace, split: str, submission: bool, outdir: str
                       ) -> tuple[dict, list[str]]:
    """Score a predictions file or evaluate a checkpoint on ``split``; write the files into ``outdir``.
    Returns the metrics record and the pictures written."""
    pictures: list[str] = []
    if args.predictions:
        dataset = build_dataset(args.dataset, args.path, split, load_config(), train=False)
        rows = np.arange(len(dataset))
        preds = dataset.from_file_frame(read_predictions(args.predictions, len(dataset), dataset.spec.num_joints),
                                        rows)
        result = score_predictions(preds, dataset, args.alpha) if dataset.ann.labelled else {}
        check_usable(result, f"--predictions {args.predictions}")
    else:
        result, dataset = evaluate_checkpoint(
            args.checkpoint, args.dataset, args.path, split, args.device, flip=not args.no_flip, amp=args.amp,
            batch_size=args.batch_size, workers=args.workers, max_samples=args.max_samples, alpha=args.alpha,
            trust=args.trust_checkpoint)
        print(f"device {result['device']} | {result['precision']} | flip test {'on' if result['flip_test'] else 'off'}")
        source = result.pop("checkpoint")  # the file read: a run directory's newest complete checkpoint
        note = fallback_note(args.checkpoint, source)
        if note:
            print(note)
        check_usable(result, f"--checkpoint {source}")
        shown = slice(0, args.num_pictures)
        pictures = save_prediction_pictures(dataset, result["index"][shown], result["preds"][shown],
                                            os.path.join(outdir, "pictures"))
        if dataset.ann.labelled:
            plot_pck_curve(result, os.path.join(outdir, "pck_curve.png"))
        rows, preds = result.pop("index"), result.pop("preds")
        write_predictions(os.path.join(outdir, "predictions.h5"), dataset.to_file_frame(preds, rows),
                          result.pop("scores"))
    if submission:
        path = write_mpii_submission(os.path.join(outdir, SUBMISSION_NAME), preds, rows, dataset, args.mpii_mat)
        print(f"submission: {path}" + ("" if args.mpii_mat else " (people of test.h5 only; pass --mpii_mat "
                                       "mpii_human_pose_v1_u12_1.mat for the layout the MPII evaluation reads)"))
    if not dataset.ann.labelled:
        written = "" if args.predictions else f"; predictions: {os.path.join(outdir, 'predictions.h5')}"
        print(f"no metric: split '{split}' of {args.dataset} has no joint labels{written}")
        return result, pictures
    print(report(result))
    print(f"metrics: {write_metrics(outdir, result, args.dataset, split)}")
    return result, pictures


if __name__ == "__main__":
    main()
