"""A medium generator for a short real-photo run on one GPU: lspet-9k (8,100 train / 900 val photos, 128x128),
as ``scripts/gpu-acceptance.sh`` trains it (supervised, then adversarial from the supervised half-way snapshot).

- 128 input / 32 x 32 heatmaps, the size of the photos; 4 stacks x 256 channels (the paper's G has 4 x 512 at
  256 px): 22 GFLOP per image for a supervised step, 46 for an adversarial one (torch.utils.flop_counter).
- The small-data recipe of ``config.cpu_small`` (its docstring gives the measurements behind it): sigma 2 at
  32 px, foreground-weighted MSE, milder augmentation, Adam at 1e-3.
- batch 32, decoded photos cached in RAM (about 0.5 GB); DataLoader workers from the cores and GPUs.
- amp stays ``auto``: bf16 on GPUs from compute capability 8.0, fp16 with loss scaling below.
Not yet timed on a GPU (none was lent to the task that wrote it): at 100 TFLOP/s achieved, a supervised epoch
is 1.8 s of arithmetic, so the input pipeline and validation will set the pace; the acceptance summary
records each run's wall time and images/s so that ``epochs`` can be set from a measurement.
"""

OVERRIDES = {
    "input_res": 128,
    "output_res": 32,
    "sigma": 2.0,
    "heatmap_fg_weight": 20.0,
    "rotation": 15.0,
    "scale_min": 0.9,
    "scale_max": 1.1,
    "num_stacks": 4,
    "channels": 256,
    "disc_channels": 128,
    "lr": 1e-3,
    "optimizer": "Adam",
    "epochs": 40,
    "lr_milestones": (32,),
    "batch_size": 32,
    "cache_images": True,
    "print_every": 50,
}
