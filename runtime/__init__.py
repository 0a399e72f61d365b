"""Where and how code executes, below everything that trains or predicts.

``device``: device choice, precision (autocast), placement of modules and image batches.
``distributed``: the ``torchrun`` process group and this process's rank.
``system``: seeding, glibc/OpenCV tuning for DataLoader workers, the machine's description.
``budget``: time budgets from measured step times (steps, windows and epochs that fit, deadlines).
"""
