"""Export a checkpoint's generator as a weights-only file to share (and optionally as ONNX).

    python -m scripts.export trainmodel/apn/best.pt weights/apn.pt
    python -m scripts.export trainmodel/apn/best.pt weights/apn-fp16.pt --fp16 --onnx weights/apn.onnx

The file holds G's weights, its model arguments, the resolved config and the dataset name, nothing else:
it loads with torch.load(weights_only=True), and test.py and predict.py take it as --checkpoint. Layout and
the ONNX graph's inputs and outputs: inference/export.py.
"""

from __future__ import annotations

import argparse
import os

from checkpoint import load_checkpoint, resolve_checkpoint_path
from cli.common import add_overwrite_flag, add_trust_checkpoint_flag
from inference.export import check_onnx, export_onnx, export_record, require_onnx, save_export
from storage.io import check_replaceable, existing_parent_dir, replacing_note
from utils.errors import UserInputError, exit_on_user_error, refuse_empty


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="training checkpoint (.pt) or run directory (then its last.pt)")
    p.add_argument("output", help="weights-only file to write (.pt)")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size; "
                                                       "BatchNorm statistics stay float32; loaded back into float32)")
    p.add_argument("--onnx", default=None, metavar="FILE.onnx", help="also write G as an ONNX graph")
    add_overwrite_flag(p, "the output files")
    add_trust_checkpoint_flag(p)
    return p.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, str]:
    """Write the export (and the ONNX graph); returns what was written, by kind."""
    args = refuse_empty(parse_args(argv), positional=("checkpoint", "output"))
    source = resolve_checkpoint_path(args.checkpoint, "checkpoint")  # a positional argument, not a --flag
    outputs = {"output": args.output, **({"--onnx": args.onnx} if args.onnx is not None else {})}
    for flag, path in outputs.items():  # a folder cannot become the file: refuse before naming it as replaced
        if os.path.isdir(path):
            raise UserInputError(f"{flag}: {path} is a directory; expected the file to write, e.g. "
                                 f"{os.path.join(path, 'apn' + ('.onnx' if flag == '--onnx' else '.pt'))}")
    replaced = [p for flag, path in outputs.items()
                for p in check_replaceable([existing_parent_dir(path, flag)], [source], flag, args.overwrite)]
    if args.onnx is not None:
        require_onnx()  # before anything is written
    if replaced:
        print(replacing_note(replaced))
    record = export_record(load_checkpoint(source, args.trust_checkpoint, "checkpoint"), args.fp16, "checkpoint")
    written = {"weights": save_export(record, args.output)}
    size = os.path.getsize(args.output) / 2**20
    print(f"weights: {args.output} ({size:.1f} MiB, {record['weights_dtype']}; "
          "loads with torch.load(weights_only=True))")
    if args.onnx is not None:
        written["onnx"] = export_onnx(record, args.onnx)
        diff = check_onnx(args.onnx, record)
        print(f"onnx: {args.onnx}" + (" (onnxruntime not installed: check skipped)" if diff is None
                                      else f" (onnxruntime matches torch: max abs difference {diff:.2g})"))
    return written


if __name__ == "__main__":
    main()
