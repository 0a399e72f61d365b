"""Newell et al.'s 8-stack hourglass with 256-channel residuals (the supervised reference model), with the
defaults for training it on GPUs.

- 164 GFLOP per image for a supervised step at 256 px (``torch.utils.flop_counter``); saved activations at most
  0.66 GB per image in fp32 (saved-tensor hooks on the meta device; bf16 autocast about halves that).
- ``batch_size`` is per GPU (per process). 32: at 8 an H100 needs ~4 ms for the arithmetic of a step (at 35%
  of its 989 TFLOP/s dense bf16) but the host needs ~25 ms to launch its ~5,000 eager kernels (1,600 modules
  forward, twice that backward), so the GPU idles; 32 gives the GPU ~15 ms of work per step, and compile
  fuses the kernels. Its activations, about 11 GB in bf16, leave room on a 40 GB card; the acceptance run's
  benchmark (``scripts/gpu-acceptance.sh``) records the memory and images/s actually reached at 32.
- ``lr`` 2.5e-4 is the recipe's RMSprop rate for a batch of 6 (Newell et al. 2016 and their released
  pose-hg-train; bearpaw/pytorch-pose trains the same model at batch 6), so ``lr_base_batch`` 6: the trainer
  scales lr (and disc_lr) by sqrt(global batch / 6), the square-root rule for adaptive optimisers
  (``training.build.batch_lr_scale`` gives the reasoning and the papers): 5.8e-4 on one GPU at 32,
  1.6e-3 on 8 GPUs (global batch 256). A rule, not a tuned value: no run at that scale has been made here.
- ``compile``: on. The trainer probes torch.compile first (a tiny function in a subprocess) and runs eager with
  one line where it cannot work (no C compiler, Python headers or Triton); on a CPU it compiles too, slower
  than eager there (docs/performance.md): ``--set compile=False``.
"""

OVERRIDES = {
    "num_stacks": 8,
    "channels": 256,
    "predict_occlusion": False,
    "batch_size": 32,
    "lr_base_batch": 6,
    "compile": True,
}
