"""Entry points beside the trainers, run from the repository root as modules: ``python -m scripts.benchmark``,
``scripts.export``, ``scripts.prepare_mpii``, ``scripts.collect_results``, ``scripts.plot_curves``,
``scripts.acceptance_summary``; and the shell scripts that call them and the trainers with every flag visible."""
