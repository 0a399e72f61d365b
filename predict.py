"""Predict the pose of the person in images, a folder of images or a video, with a trained checkpoint.

    python predict.py --checkpoint trainmodel/demo/best.pt --image photo.jpg --output out/
    python predict.py --checkpoint trainmodel/demo/best.pt --image photos/ --bbox 120 40 200 380
    python predict.py --checkpoint weights/apn.pt --image photos/ --bboxes boxes.json --skip_bad_images
    python predict.py --checkpoint weights/apn.pt --image clip.mp4 --bboxes per_frame.json

Per image: ``<name>.json`` (joint names, x and y in original-image px, heatmap peak score) and ``<name>.png``
(the skeleton drawn over the image). Per video: ``<stem>.jsonl`` (one line of joints per frame) and
``<stem>.mp4`` (the skeletons over the frames, same fps). Without --bbox or --bboxes the person box is the
whole image or frame. A file already in --output, an earlier prediction's or yours, is replaced only with
--overwrite, and named first; an input is never written over.
"""

from __future__ import annotations

import argparse

from checkpoint import fallback_note
from cli.common import add_inference_flags, add_overwrite_flag
from inference.predict import Boxes, Predictor, check_box, plan_jobs, predict_files, read_boxes
from storage.io import check_replaceable, ensure_writable_dir, replacing_note
from utils.errors import exit_on_user_error, refuse_empty


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint (.pt), weights-only export (scripts/export.py) or run directory (its last.pt)")
    p.add_argument("--image", required=True,
                   help="image file, directory of images, or video file (.mp4 .avi .mov .mkv .webm, or any file "
                        "OpenCV opens as a video)")
    boxes = p.add_mutually_exclusive_group()
    boxes.add_argument("--bbox", type=float, nargs=4, metavar=("X", "Y", "W", "H"), default=None,
                       help="person box in original px for every image or frame (the whole image is 0 0 W H); the "
                            "network sees the square of side max(W, H) around its centre, so leave some margin "
                            "around the person as in training")
    boxes.add_argument("--bboxes", default=None, metavar="FILE.json",
                       help="one box per image (a dict: file name -> [x, y, w, h]) or per video frame (a list of "
                            "[x, y, w, h], frame 0 first)")
    p.add_argument("--skip_bad_images", action="store_true",
                   help="skip images that cannot be decoded (and the undecodable end of a video), naming them")
    p.add_argument("--output", default="predictions", help="directory for the output files")
    add_overwrite_flag(p, "files already in --output (an earlier prediction's)")
    add_inference_flags(p)
    return p.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> list[dict]:
    """Predict and write the files; returns one record per image or video."""
    args = refuse_empty(parse_args(argv))
    if args.bboxes is not None:
        boxes = read_boxes(args.bboxes)
    else:  # the image size is checked per image; the values now, before the model is loaded
        boxes = Boxes(fixed=check_box(args.bbox, "--bbox") if args.bbox is not None else None)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, flip=not args.no_flip, amp=args.amp,
                                          trust=args.trust_checkpoint)
    ensure_writable_dir(args.output, "--output")
    jobs = plan_jobs(args.image, args.output)  # then every check of the inputs and outputs, before any write
    for job in jobs:
        if job.video:
            boxes.check_video(job)
    replaced = check_replaceable([out for job in jobs for out in job.outputs], [job.source for job in jobs],
                                 "--output", args.overwrite)
    print(predictor.describe())
    note = fallback_note(args.checkpoint, predictor.source)
    if note:
        print(note)
    if replaced:
        print(replacing_note(replaced))
    outcome = predict_files(predictor, jobs, boxes, skip_bad=args.skip_bad_images)
    for r in outcome.records:
        if "video" in r:
            fps = f"{r['fps']:g} fps" + ("" if r["fps_known"] else " (the video gives none; assumed)")
            print(f"{r['image']}: {r['frames']} frames, {fps}  {r['jsonl']}  {r['video']}")
        else:
            print(f"{r['image']}: {r['json']}  {r['png']}")
    if outcome.skipped:
        print(f"skipped {len(outcome.skipped)} unreadable: {', '.join(outcome.skipped)}")
    return outcome.records


if __name__ == "__main__":
    main()
