"""Train the supervised stacked-hourglass baseline (Newell et al. 2016).

    python train_supervised.py --dataset synthetic --config config.cpu_small --model_name demo
    python train_supervised.py --dataset mpii --path data/mpii --model_name hg8 --config config.newell8
"""

from __future__ import annotations

from cli.training import resolve_config, resumed_settings, run_spec, training_parser
from training.loop import check, train
from utils.errors import exit_on_user_error, refuse_empty


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict | None:
    """Parse flags, resolve the config, train (or only check, ``--check``); returns the last validation result."""
    args = refuse_empty(training_parser(__doc__, "supervised").parse_args(argv))
    resumed = resumed_settings(args)
    cfg, spec = resolve_config(args, resumed), run_spec(args, resumed)
    if args.check is not None:  # the DDP scripts' check before torchrun starts a process per GPU
        print(check(cfg, spec, args.check))
        return None
    return train(cfg, spec)


if __name__ == "__main__":
    main()
