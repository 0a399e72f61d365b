"""Fitting the networks: ``build`` (networks, placement, optimisers), ``steps`` (one function per update of
Algorithm 1), ``losses``, ``loop`` (build_run, fit), ``checkpoint`` (crash-safe save and resume), ``data``
(the training DataLoader), ``stats`` (device statistics read back once per ``print_every``), ``runlog``."""
