"""Every default setting in one place: the paper's generator and training recipe.

Presets (``config/cpu_small.py``, ``config/gpu_lspet.py``, ``config/newell8.py``, ``config/tiny.py``) override
only what differs; ``--set key=value`` on the command line overrides single entries.
"""

CONFIG = {
    # --- what is trained ------------------------------------------------------------------
    # Set by the entry script (train_supervised.py / train_adversarial.py); saved so that config.json and
    # result records name the method and every ablation switch of the run.
    "method": "adversarial",  # supervised (Newell et al.'s baseline) | adversarial (Chen et al.'s Algorithm 1)
    "use_pose_disc": True,  # adversarial runs: train the pose discriminator P (--no_pose_disc drops it)
    "use_conf_disc": True,  # adversarial runs: train the confidence discriminator C (--no_conf_disc drops it)
    "pretrained": "",  # checkpoint whose G initialises this run's G ("" = random init; --pretrained)
    "loss": "mse",  # heatmap loss of G; the paper's (and the only one implemented): mse
    # --- data and augmentation -------------------------------------------------------------
    "input_res": 256,  # network input side in px (paper: 256x256)
    "output_res": 64,  # heatmap side in px; input_res / 4 because the hourglass stem downsamples by 4
    "sigma": 2.0,  # std of target Gaussians in heatmap px at output_res 64 (the standard hourglass value)
    "rotation": 30.0,  # max |rotation| in degrees, uniform (paper: +-30)
    "scale_min": 0.75,  # min random zoom factor of the person box (paper: 0.75)
    "scale_max": 1.25,  # max random zoom factor of the person box (paper: 1.25)
    "flip": True,  # random horizontal flip with left/right joint swap (paper: yes)
    "color_jitter": 0.2,  # max relative per-channel gain change; brightness shift is half of it
    "mean": (0.485, 0.456, 0.406),  # per-channel RGB mean subtracted from [0,1] pixels
    "std": (0.229, 0.224, 0.225),  # per-channel RGB std dividing [0,1] pixels
    "box_margin": 1.3,  # LSP/LSPET/synthetic person box: side = box_margin x larger extent of the annotated joints
    "synthetic_train_size": 6000,  # images in the synthetic train split
    "synthetic_val_size": 500,  # images in the synthetic val split
    "synthetic_canvas": 256,  # side in px of each synthetic image as drawn
    "synthetic_seed": 0,  # base seed of the synthetic dataset (train and val use disjoint streams)
    "cache_images": False,  # keep decoded images in RAM (worthwhile for small sets such as lspet-mini)
    # Training only: decode a JPEG at 1/2, 1/4 or 1/8 of its size (libjpeg's scaled decoding) when the crop
    # keeps at least one decoded pixel per input pixel at the sample's zoom; a large photo's person box
    # often spans 2-4x the crop (MPII). Validation and test decode whole images.
    "reduced_decode": True,
    # Training on a GPU: the loader ships uint8 crops and joints, and the step normalises the crops and draws
    # the targets on the GPU (equal to the worker-drawn ones), a sixth of the bytes through shared memory.
    # False, and on the CPU: float images and target maps from the workers.
    "device_targets": True,
    # --- generator (stacked multi-task hourglass) -----------------------------------------
    "num_stacks": 4,  # hourglass stacks (paper's G: 4)
    "channels": 512,  # residual feature channels (paper's G: 512; Newell: 256)
    "depth": 4,  # recursion depth of each hourglass (4 halvings: 64 -> 4)
    "num_blocks": 1,  # residual modules per hourglass level
    "predict_occlusion": True,  # multi-task G: occlusion heatmaps beside pose heatmaps at every stack
    # --- discriminators (adversarial training) --------------------------------------------
    "disc_channels": 128,  # feature channels of P and C
    "disc_depth": 3,  # stride-2 stages in the encoder of P and C (64 -> 8)
    "alpha": 1.0 / 220,  # weight of the confidence-discriminator term in G's loss (paper: 1/220)
    "beta": 1.0 / 180,  # weight of the pose-discriminator term in G's loss (paper: 1/180)
    # Fake targets for P: joint i counts as "real" when the decoded prediction lies within
    # delta * reference length (head size for MPII, torso for LSP) of the truth; 0.5 is PCKh@0.5's
    # own threshold, so P learns exactly what the metric rewards.
    "delta": 0.5,
    # Fake targets for C: joint i counts as "real" when the L2 distance between predicted and
    # true heatmap of joint i is below epsilon. A target Gaussian has L2 norm sqrt(pi) * sigma (1.77
    # at sigma 1, 3.54 at sigma 2); a 1 px shift of the peak gives 1.18 / 1.23, and the right place at
    # half height 0.89 / 1.77. So 1.0 admits only near-perfect maps, and at sigma 2 hardly any: the
    # lspet-mini runs in the README logged c_fake_ones (share of joints counted real) under 1%, so C acts
    # mostly as a plain real-vs-predicted critic there. epsilon=3.0 (c_fake_ones 11-32%) did not change
    # PCK there either (README "Results"); keep epsilon below sqrt(pi) * sigma so an empty map is fake.
    "epsilon": 1.0,
    # Algorithm 1, step 1: "update G by descending the gradient of the error loss (Eq. 1)" before P and C
    # see G's outputs; step 4 then updates G again by Eq. 4 (error loss + adversarial terms).
    "g_error_step": True,
    # Scale of the error loss L_MSE in both G updates. Eq. 1 reads L = 1/(2MN) sum_n sum_i (||y - y_hat||^2 +
    # ||z - z_hat||^2) over M images and N stacks, each norm over a whole J x 64 x 64 heatmap tensor ("paper").
    # The text also says alpha and beta were chosen "to make the different components of the final objective
    # function have the same scale", which fits a per-pixel mean better ("pixel_mean": squared error averaged
    # over the labelled joints' pixels, summed over stacks, pose + occlusion). The two differ by ~J*64*64/2,
    # so alpha and beta weigh ~1000x more against the MSE under "pixel_mean"; with RMSprop or Adam that weight
    # is the only difference (both optimisers ignore a constant loss scale; SGD does not: its lr must shrink by
    # the same factor under "paper"). The epoch log's adv_grad_ratio shows how hard the terms push.
    # Default "paper", set by scripts/study-lspet-9k.sh (README "Results"), by the rule fixed before its sweep
    # ran: the reading that scores higher against supervised from the same snapshot. On lspet-9k seed 0 both
    # beat supervised beyond their 95% intervals; "paper" more (+1.38 points, adv_grad_ratio ~0.001: P and C
    # barely push, so Algorithm 1's second G update per batch is what helps; alpha, beta x0.1 under
    # "pixel_mean", a tenth of the MSE's push, scored the same) than "pixel_mean" (+0.75, ratio 0.1 -> 1.6:
    # they push as hard as the MSE). One seed; paper - pixel_mean = +0.63, 95% CI [-0.02, +1.29].
    # "paper" is also Eq. 1 as written. "pixel_mean" is what the lspet-mini and demo figures
    # in the README used (and Newell et al.'s own mean-squared-error criterion).
    "mse_scale": "paper",
    # Which stacks' outputs P and C judge in G's Eq. 4 update (the paper does not say): "last" = the final
    # prediction only; "all" = every stack's, the terms averaged over stacks so alpha and beta keep their scale.
    "adv_stacks": "last",
    "gen_iters": 1,  # G updates by Eq. 4 per iteration of Algorithm 1
    "disc_iters": 1,  # P and C updates per iteration of Algorithm 1
    "disc_lr": 2.5e-4,  # learning rate of P and C
    "adversarial_warmup_epochs": 0,  # epochs of supervised-only G before the adversarial terms switch on
    # --- optimisation --------------------------------------------------------------------
    "optimizer": "RMSprop",  # RMSprop | Adam | SGD (paper: RMSprop)
    "lr": 2.5e-4,  # initial learning rate (paper: 2.5e-4)
    "weight_decay": 0.0,  # L2 penalty
    "momentum": 0.0,  # momentum for RMSprop/SGD
    "lr_milestones": (150, 170),  # epochs at which lr is multiplied by lr_gamma
    "lr_gamma": 0.1,  # step-schedule factor
    "epochs": 200,  # training epochs
    "batch_size": 8,  # images per step (paper's G: batch limited by a 12 GB GPU)
    "heatmap_fg_weight": 0.0,  # squared errors weighted by 1 + w * target heatmap (paper: 0, plain MSE)
    "grad_clip": 0.0,  # max global grad norm; 0 disables
    # --- runtime -------------------------------------------------------------------------
    "workers": -1,  # DataLoader worker processes per rank; -1 = from the cores and GPUs (training/data.py)
    # auto | bf16 | fp16 | off. auto: CUDA bf16 from compute capability 8.0, fp16 below; CPU bf16 only where it
    # runs natively (AMX or AVX512-BF16), fp32 elsewhere (runtime/device.py: choose_precision)
    "amp": "auto",
    "channels_last": True,  # NHWC activations (faster convolutions on CPU and tensor cores)
    "compile": False,  # torch.compile the models
    "flip_test": True,  # average predictions with those of the mirrored image at test time
    "snapshot_epochs": (),  # keep epoch_<N>.pt after N completed epochs, e.g. the supervised G to start P-GAN from
    "checkpoint_every": 0,  # also save last.pt every N iterations inside an epoch; 0 = only at epoch end
    "print_every": 50,  # iterations between text log lines (and loss read-backs)
    "seed": 0,  # random seed of the run
    "deterministic": False,  # deterministic algorithms (bit-exact resume on CPU; slower on GPU)
    "sync_bn": False,  # convert BatchNorm to SyncBatchNorm under DDP
}

# Allowed values, checked whenever a config is resolved (defaults, preset, --set, a checkpoint's config).
CHOICES = {
    "method": ("supervised", "adversarial"),
    "loss": ("mse",),
    "mse_scale": ("pixel_mean", "paper"),
    "adv_stacks": ("last", "all"),
    "optimizer": ("RMSprop", "Adam", "SGD"),
    "amp": ("auto", "bf16", "fp16", "off"),
}
# (low, high) bounds, both inclusive; None = unbounded on that side. Keys not listed here or in CHOICES
# are booleans, strings or tuples checked by type and by ``config.check_relations``.
RANGES = {
    "input_res": (16, 2048), "output_res": (4, 512), "sigma": (0.1, 50.0), "rotation": (0.0, 180.0),
    "scale_min": (0.05, 10.0), "scale_max": (0.05, 10.0), "color_jitter": (0.0, 1.0), "box_margin": (0.1, 10.0),
    "synthetic_train_size": (1, None), "synthetic_val_size": (1, None), "synthetic_canvas": (16, 4096),
    "synthetic_seed": (0, None),
    "num_stacks": (1, 16), "channels": (4, 4096), "depth": (1, 6), "num_blocks": (1, 8),
    "disc_channels": (4, 4096), "disc_depth": (1, 6), "alpha": (0.0, None), "beta": (0.0, None),
    "delta": (1e-6, None), "epsilon": (1e-9, None), "gen_iters": (1, 100), "disc_iters": (1, 100),
    "disc_lr": (1e-12, 10.0), "adversarial_warmup_epochs": (0, None),
    "lr": (1e-12, 10.0), "weight_decay": (0.0, 1.0), "momentum": (0.0, 0.999999), "lr_gamma": (1e-6, 1.0),
    "epochs": (1, None), "batch_size": (1, None), "heatmap_fg_weight": (0.0, None), "grad_clip": (0.0, None),
    "workers": (-1, 256), "checkpoint_every": (0, None), "print_every": (1, None), "seed": (0, 2**63 - 1),
}
