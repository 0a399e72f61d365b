"""Turn tested runs into result records and a summary table (used by scripts/reproduce-*.sh).

    python -m scripts.collect_results record --metrics outputs/x/metrics.json --run_dir trainmodel/x \\
        --method supervised --seed 0 --epochs 24 --wall_seconds 1234 --output results/lspet-mini/x.json
    python -m scripts.collect_results summary results/lspet-mini
        # prints it; writes summary.md and curves.png there (and grad_ratio.png when runs logged adv_grad_ratio)

The summary has these tables: per method, each joint group's score as mean ± std over seeds; each other
method minus --baseline, paired by seed and by val image, with a 95% bootstrap interval over val images
(records need test.py's per-image hits; one such table per --baseline given); and, for adversarial runs,
the logged gradient ratio adv_grad_ratio with the settings that set it (mse_scale, alpha, beta, adv_stacks).
"""

from __future__ import annotations

import argparse
import os

from cli.common import add_overwrite_flag
from storage.io import check_replaceable, existing_parent_dir, replacing_note, write_bytes, write_json
from utils.errors import UserInputError, exit_on_user_error, refuse_empty


@exit_on_user_error
def main(argv: list[str] | None = None) -> str:
    """Parse flags; write a record or a summary; returns what was written."""
    from reporting.records import grad_ratio_table, load_records, paired_table, run_record, summary_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="one tested run -> one JSON record")
    rec.add_argument("--metrics", required=True, help="metrics.json written by test.py")
    rec.add_argument("--run_dir", required=True, help="training run directory (its config.json is stored)")
    rec.add_argument("--method", required=True, help="label, e.g. supervised or adversarial")
    rec.add_argument("--seed", type=int, required=True)
    rec.add_argument("--epochs", type=int, required=True, help="epochs G was trained in all")
    rec.add_argument("--wall_seconds", type=float, required=True,
                     help="wall time of training plus testing (of this start, for a resumed run)")
    rec.add_argument("--info", action="append", default=[], metavar="KEY=VALUE", help="extra field to store")
    rec.add_argument("--output", required=True, help="record file to write (.json)")
    add_overwrite_flag(rec, "the --output record")
    summ = sub.add_parser("summary", help="all records of a folder -> FOLDER/summary.md and FOLDER/curves.png")
    summ.add_argument("folder")
    summ.add_argument("--baseline", action="append", metavar="METHOD",
                      help="method the others are paired against (default supervised); repeat for one more "
                           "table per baseline, e.g. --baseline supervised --baseline adversarial for a sweep "
                           "against its default setting")
    summ.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples of the val images")
    args = refuse_empty(p.parse_args(argv), positional=("folder",))

    if args.command == "record":
        extra = {}
        for pair in args.info:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UserInputError(f"--info: expected KEY=VALUE, got '{pair}'")
            extra[key] = value
        replaced = check_replaceable([existing_parent_dir(args.output, "--output")], [args.metrics], "--output",
                                     args.overwrite)
        record = run_record(args.metrics, args.run_dir, args.method, args.seed, args.epochs, args.wall_seconds,
                            **extra)
        if replaced:
            print(replacing_note(replaced))
        write_json(args.output, record, indent=1)
        print(f"{args.output}: {record['method']} seed {record['seed']} {record['metric']} {record['mean']:.2f}")
        return args.output
    if args.bootstrap < 100:
        raise UserInputError(f"--bootstrap: need at least 100 resamples for a 95% interval, got {args.bootstrap}")
    records = load_records(args.folder)
    methods = sorted({r["method"] for r in records})
    for name in args.baseline or []:  # a name given must be there (a typo once just lost its table); the default
        if name not in methods:      # may be absent: a sweep without a supervised arm
            raise UserInputError(f"--baseline: no records of method '{name}' in {args.folder}; methods found: "
                                 f"{', '.join(methods)}")
    baselines = args.baseline or ["supervised"]
    paired = [paired_table(records, b, args.bootstrap, skip=tuple(baselines[:i])) for i, b in enumerate(baselines)]
    table = "\n".join(t for t in (summary_table(records), *paired, grad_ratio_table(records)) if t)
    path = os.path.join(args.folder, "summary.md")
    write_bytes(path, table.encode())
    print(table, end="")
    logged = [r for r in records if os.path.isfile(os.path.join(r["run_dir"], "log.jsonl"))]
    if logged:
        from reporting.plots import plot_grad_ratio_curves, plot_validation_curves

        curves = {id(r): (f"{r['method']} seed {r['seed']}", r["run_dir"], int(r.get("start_epoch", 0)))
                  for r in logged}
        print(plot_validation_curves(list(curves.values()), os.path.join(args.folder, "curves.png"),
                                     records[0]["metric"]))
        adversarial = [curves[id(r)] for r in logged if r.get("adv_grad_ratio")]
        if adversarial:
            print(plot_grad_ratio_curves(adversarial, os.path.join(args.folder, "grad_ratio.png")))
    return path


if __name__ == "__main__":
    main()
