"""Fitting the networks: ``build`` (networks, placement, optimisers), ``steps`` (one function per update of
Algorithm 1), ``losses``, ``run`` (a run's objects, checks, build_run, its checkpoints), ``loop`` (fit),
``checkpoint`` (file format, crash-safe writes, RNG states), ``data``
(the training DataLoader), ``stats`` (device statistics read back once per ``print_every``), ``runlog``,
``rundir`` (who may write into a run directory), ``runlock`` (one training per run directory) and
``stopping`` (a scheduler's stop signal: finish the step, save, exit)."""
