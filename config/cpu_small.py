"""Small generator that trains in minutes on two CPU cores (128 input, 32x32 heatmaps).

Departures from the paper's recipe, each because a small net has only ~2,000-5,000 steps here (measured on
lspet-mini train/val, 450 steps each, in the README's Results section):
- sigma 2 at 32 px (twice the paper's relative width) and heatmap_fg_weight 20: both pull the net off the
  all-zero prediction early (val PCK@0.2 after 450 steps: 8.8% plain, 17.6% with fg weight 10).
- milder augmentation (rotation +-15 deg, scale 0.9-1.1): 20.8% instead of 17.6% after 450 steps.
- Adam at 1e-3 instead of RMSprop at 2.5e-4: a faster start.
"""

OVERRIDES = {
    "input_res": 128,
    "output_res": 32,
    "sigma": 2.0,
    "heatmap_fg_weight": 20.0,
    "rotation": 15.0,
    "scale_min": 0.9,
    "scale_max": 1.1,
    "num_stacks": 2,
    "channels": 128,
    "disc_channels": 64,
    "lr": 1e-3,
    "optimizer": "Adam",
    "epochs": 36,
    "lr_milestones": (28,),
    "batch_size": 16,
    "print_every": 20,
}
