"""A medium generator for a short real-photo run on one GPU: lspet-9k (8,100 train / 900 val photos, 128x128),
as ``scripts/gpu-acceptance.sh`` trains it (supervised, then adversarial from the supervised half-way snapshot).

- 128 input / 32 x 32 heatmaps, the size of the photos; 4 stacks x 256 channels (the paper's G has 4 x 512 at
  256 px): 22 GFLOP per image for a supervised step, 46 for an adversarial one (torch.utils.flop_counter).
- The small-data recipe of ``config.cpu_small`` (its docstring gives the measurements behind it): sigma 2 at
  32 px, foreground-weighted MSE, milder augmentation, Adam at 1e-3.
- ``batch_size`` 32 per GPU (per process), DataLoader workers from the cores and GPUs, decoded photos cached
  in RAM (about 0.5 GB). At 22 GFLOP per image a step of 8 would be about 1 ms of H100 arithmetic against
  several ms of kernel launches (some 800 modules); 32 still gives lspet-9k's 8,100 photos about 250 steps
  per epoch (10,000 in 40 epochs).
- ``lr`` 1e-3 is ``cpu_small``'s Adam rate, measured at its batch of 16, so ``lr_base_batch`` 16: the trainer
  scales lr (and disc_lr) by sqrt(global batch / 16), the square-root rule for adaptive optimisers
  (``training.build.batch_lr_scale`` gives the reasoning and the papers): 1.4e-3 on one GPU at 32.
- ``compile``: on, where a probe shows it works (else eager, with one line); amp stays ``auto``: bf16 on GPUs
  from compute capability 8.0, fp16 with loss scaling below.
Not yet timed on a GPU (none was lent to the task that wrote it): at 100 TFLOP/s achieved, a supervised epoch
is 1.8 s of arithmetic, so the input pipeline and validation will set the pace; ``scripts/gpu-acceptance.sh``
sizes its run of this preset from a measured step and records each run's wall time and images/s.
"""

OVERRIDES = {
    "input_res": 128,
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
    "lr_base_batch": 16,
    "compile": True,
    "cache_images": True,
    "print_every": 50,
}
