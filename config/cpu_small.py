"""Small generator that trains in minutes on two CPU cores (128 input, 32x32 heatmaps)."""

OVERRIDES = {
    "input_res": 128,
    "output_res": 32,
    "sigma": 1.0,  # same relative width as sigma 2 at 64 px
    "num_stacks": 2,
    "channels": 128,
    "disc_channels": 64,
    "lr": 1e-3,  # a small net on few epochs needs a faster start than the paper's 2.5e-4
    "optimizer": "Adam",
    "epochs": 12,
    "lr_milestones": (9, 11),
    "batch_size": 16,
    "print_every": 20,
}
