"""Train Adversarial PoseNet (Chen et al. 2017): multi-task hourglass G with pose (P) and confidence (C)
discriminators, following Algorithm 1. Ablations of the paper's Fig. 9:

    Single          train_supervised.py --set predict_occlusion=False
    Multi           train_supervised.py
    Single+Dis      train_adversarial.py --no_occlusion
    Multi+Dis       train_adversarial.py
"""

from __future__ import annotations

from training.cli import resolve_config, run_spec, training_parser
from training.loop import run
from utils.errors import UserInputError, exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict | None:
    """Parse flags, resolve the config, train adversarially; returns the last validation result."""
    p = training_parser(__doc__)
    p.add_argument("--pretrained", default=None, help="initialise G from this (supervised) checkpoint")
    p.add_argument("--alpha", type=float, default=None, help="weight of the confidence-discriminator term")
    p.add_argument("--beta", type=float, default=None, help="weight of the pose-discriminator term")
    p.add_argument("--no_pose_disc", action="store_true", help="ablation: drop the pose discriminator P")
    p.add_argument("--no_conf_disc", action="store_true", help="ablation: drop the confidence discriminator C")
    p.add_argument("--no_occlusion", action="store_true", help="ablation: G predicts pose heatmaps only")
    args = p.parse_args(argv)
    extra = [f"{k}={getattr(args, k)}" for k in ("alpha", "beta") if getattr(args, k) is not None]
    if args.no_occlusion:
        extra.append("predict_occlusion=False")
    args.set = extra + args.set
    if args.pretrained and args.resume:
        raise UserInputError("--pretrained and --resume exclude each other (resume restores G already)")
    spec = run_spec(args, "adversarial", pretrained=args.pretrained, use_pose_disc=not args.no_pose_disc,
                    use_conf_disc=not args.no_conf_disc)
    return run(resolve_config(args), spec)


if __name__ == "__main__":
    main()
