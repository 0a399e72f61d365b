"""Train Adversarial PoseNet (Chen et al. 2017): multi-task hourglass G with pose (P) and confidence (C)
discriminators, following Algorithm 1. Ablations of the paper's Fig. 9:

    Single          train_supervised.py --set predict_occlusion=False
    Multi           train_supervised.py
    Single+Dis      train_adversarial.py --no_occlusion
    Multi+Dis       train_adversarial.py
"""

from __future__ import annotations

from cli.training import resolve_config, resumed_settings, run_spec, training_parser
from training.loop import check, train
from utils.errors import exit_on_user_error, refuse_empty


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict | None:
    """Parse flags, resolve the config, train adversarially (or only check, ``--check``); returns the last
    validation result."""
    args = refuse_empty(training_parser(__doc__, "adversarial").parse_args(argv))
    resumed = resumed_settings(args)
    cfg, spec = resolve_config(args, resumed), run_spec(args, resumed)
    if args.check is not None:  # the DDP scripts' check before torchrun starts a process per GPU
        print(check(cfg, spec, args.check))
        return None
    return train(cfg, spec)


if __name__ == "__main__":
    main()
