"""Training and inference machinery shared by the entry scripts: steps, loops, checkpoints, runtime."""
