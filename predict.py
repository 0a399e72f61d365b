"""Predict the pose of the person in one image (or every image of a directory) with a trained checkpoint.

    python predict.py --checkpoint trainmodel/demo/best.pt --image photo.jpg --output out/
    python predict.py --checkpoint trainmodel/demo/best.pt --image photos/ --bbox 120 40 200 380

Writes ``<name>.json`` (joint names, x and y in original-image px, heatmap peak score) and ``<name>.png``
(the skeleton drawn over the image) per image. Without --bbox the person box is the whole image.
"""

from __future__ import annotations

import argparse

from config.default_config import CHOICES
from inference.predictor import Predictor, predict_files
from utils.errors import exit_on_user_error
from utils.io import ensure_writable_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint (.pt) or run directory (then its last.pt)")
    p.add_argument("--image", required=True, help="image file, or a directory of images")
    p.add_argument("--bbox", type=float, nargs=4, metavar=("X", "Y", "W", "H"), default=None,
                   help="person box in original px (the whole image is 0 0 W H); the network sees the square of "
                        "side max(W, H) around its centre, so leave some margin around the person as in training")
    p.add_argument("--output", default="predictions", help="directory for the .json and .png files")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no_flip", action="store_true", help="disable flip-test averaging")
    p.add_argument("--amp", choices=CHOICES["amp"], default=None, help="precision (default: the checkpoint's amp)")
    p.add_argument("--trust_checkpoint", action="store_true",
                   help="allow a full pickle load of an old-format checkpoint (runs code: only files you made)")
    return p.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> list[dict]:
    """Predict and write the files; returns one record per image."""
    args = parse_args(argv)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, flip=not args.no_flip, amp=args.amp,
                                          trust=args.trust_checkpoint)
    outdir = ensure_writable_dir(args.output, "--output")
    print(predictor.describe())
    records = predict_files(predictor, args.image, outdir, args.bbox)
    for r in records:
        print(f"{r['image']}: {r['json']}  {r['png']}")
    return records


if __name__ == "__main__":
    main()
