"""Smallest working model for tests: runs a training step in well under a second on CPU."""

OVERRIDES = {
    "input_res": 64,
    "sigma": 1.0,
    "num_stacks": 2,
    "channels": 16,
    "depth": 2,
    "disc_channels": 8,
    "disc_depth": 2,
    "epochs": 1,
    "batch_size": 4,
    "workers": 0,
    "amp": "off",  # fp32 on every CPU: the tests that use this preset then compute alike everywhere
    "synthetic_train_size": 16,
    "synthetic_val_size": 8,
    "synthetic_canvas": 96,
    "print_every": 2,
    "lr_milestones": (100,),
}
