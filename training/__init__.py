"""Fitting the networks: ``build`` (networks, placement, optimisers, step context), ``steps`` (one function per
update of Algorithm 1), ``losses``, ``loop`` (fit: the epochs, reading like Algorithm 1), ``guard`` (the fault
handling around each step: unreadable images, non-finite losses), ``run`` (``build_run``: a run's objects, built
once; saving and restoring them), ``spec`` (what a run reads and writes), ``state`` (its position: the one part
that changes), ``preflight`` (every refusal before a run writes), ``data`` (the training DataLoader), ``stats``
(device statistics read back once per ``print_every``; a diverged run), ``runlog``, ``rundir`` (who may write
into a run directory), ``runlock`` (one training per run directory) and ``stopping`` (a scheduler's stop
signal: finish the step, save, exit). The checkpoint file itself is the ``checkpoint`` package's.
``continuation``: a new run that continues another run's checkpoint (``--continue_from``)."""
