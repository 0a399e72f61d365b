"""Draw the training curves of a run directory from its log.jsonl: losses and validation mean per epoch, and for
adversarial runs the gradient ratio adv_grad_ratio (how hard P and C push G against the MSE; log scale).

    python -m scripts.plot_curves trainmodel/demo          # writes trainmodel/demo/curves.png
    python -m scripts.plot_curves trainmodel/demo --output c.png

The run's own curves.png (the trainer redraws it every epoch) is redrawn; an --output file that exists is
replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import json
import os

from cli.common import add_overwrite_flag
from storage.io import check_replaceable, existing_parent_dir, replacing_note
from utils.errors import UserInputError, exit_on_user_error, refuse_empty


@exit_on_user_error
def main(argv: list[str] | None = None) -> str:
    """Parse flags, draw, print and return the PNG path."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="run directory holding log.jsonl")
    p.add_argument("--output", default=None, help="PNG file to write (default: RUN_DIR/curves.png)")
    add_overwrite_flag(p, "the --output file")
    args = refuse_empty(p.parse_args(argv), positional=("run_dir",))
    log = os.path.join(args.run_dir, "log.jsonl")
    if not os.path.isfile(log):
        raise UserInputError(f"no training log: {log} not found (is {args.run_dir} a run directory?)")
    try:
        from reporting.plots import plot_training_curves, read_epoch_records

        records = read_epoch_records(args.run_dir)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserInputError(f"{log} is not a JSON-lines training log") from None
    if not records:
        raise UserInputError(f"{log} has no epoch records yet (the first epoch has not finished)")
    if args.output:
        replaced = check_replaceable([existing_parent_dir(args.output, "--output")], [log], "--output",
                                     args.overwrite)
        if replaced:
            print(replacing_note(replaced))
    try:
        path = plot_training_curves(args.run_dir, args.output)
    except OSError as err:
        raise UserInputError(f"--output: cannot write {args.output or args.run_dir} ({err.strerror or err})") from None
    print(path)
    return path


if __name__ == "__main__":
    main()
