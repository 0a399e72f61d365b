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
    # --- data and augmentation -------------------------------------------------------------
    "input_res": 256,  # network input side in px (paper: 256x256); heatmaps are output_res = input_res / 4
    "sigma": 2.0,  # std of target Gaussians in heatmap px at output_res 64 (HRNet's value; bearpaw's hourglass uses 1)
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
    # alpha, beta: weights of C's and P's terms in G's objective (Eq. 4). The paper sets alpha = 1/220 and
    # beta = 1/180 "to make the different components of the final objective function have the same scale"
    # (Sec. 3, training details): with a fresh discriminator's BCE of ln 2 = 0.69, alpha * L_C = 0.0031 and
    # beta * L_P = 0.0038, the size of a per-pixel mean squared heatmap error (mse_scale "pixel_mean").
    "alpha": 1.0 / 220,  # weight of the confidence discriminator's term L_C in Eq. 4 (paper: 1/220)
    "beta": 1.0 / 180,  # weight of the pose discriminator's term L_P in Eq. 4 (paper: 1/180)
    # Fake targets for P (Sec. 2.2): joint i of a prediction counts as "real" (p_fake = 1) when it lies within
    # delta reference lengths of the truth, the metric's own correctness rule. None = the threshold of the
    # dataset's metric, set when the run's dataset is known (training.build.resolve_for_dataset): 0.5 head
    # sizes for MPII (PCKh@0.5), 0.2 torso diameters for LSP and LSPET (PCK@0.2). A number overrides it.
    "delta": None,
    # Fake targets for C (Sec. 2.3): joint i counts as "real" (c_fake = 1) when the L2 distance between its
    # predicted and true heatmap is below epsilon. A target Gaussian has L2 norm sqrt(pi) * sigma (1.77 at
    # sigma 1, 3.54 at sigma 2); a 1 px shift of the peak gives 1.18 / 1.23, and the right place at half height
    # 0.89 / 1.77. So 1.0 admits only near-perfect maps, and at sigma 2 hardly any: C then acts mostly as a
    # plain real-vs-predicted critic. Keep epsilon below sqrt(pi) * sigma so that an empty map stays fake.
    "epsilon": 1.0,
    # Algorithm 1, step 1: "update G by descending the gradient of the error loss (Eq. 1)" before P and C
    # see G's outputs; step 4 then updates G again by Eq. 4 (error loss + adversarial terms).
    "g_error_step": True,
    # Scale of the error loss L_MSE in both G updates. "pixel_mean": squared heatmap error averaged over the
    # labelled joints' pixels, summed over stacks, pose + occlusion: the scale at which alpha and beta put the
    # adversarial terms "at the same scale" as the error term (the paper's stated intent, see alpha above;
    # also Newell et al.'s mean-squared-error criterion). "eq1_literal": Eq. 1 as printed, L = 1/(2MN)
    # sum_n sum_i (||y - y_hat||^2 + ||z - z_hat||^2) over M images and N stacks, each norm over a whole
    # J x H x W heatmap tensor: J * H * W / (2N) times larger with every joint labelled (8192 for this G,
    # 3584 for config.cpu_small), so alpha and beta weigh thousands of times less and P and C barely move G.
    # With RMSprop or Adam that relative weight is the only difference (both ignore a constant loss scale; SGD
    # does not: its lr must shrink by the same factor under "eq1_literal"). The epoch log's adv_grad_ratio
    # shows how hard the terms push; README "Results" has the measured scales of both readings.
    "mse_scale": "pixel_mean",
    # G's adversarial terms in Eq. 4, argmin_G max_{P,C} L_MSE(G) + alpha L_C(G, C) + beta L_P(G, P), with
    # L_P = E[log P(y, z, x)] + E[log(1 - |P(G(x), x) - p_fake|)] and L_C alike with C and c_fake (Sec. 2.2-2.3).
    # "paper": G minimises its part as written, log(1 - |D(G(x)) - fake|) per joint = -BCE(D(G(x)), fake): the
    # min-max game with the per-joint fake targets (G pushes D's output away from p_fake / c_fake, towards
    # "real" where a joint is fake, towards "fake" where it is real). "nonsaturating": the common GAN
    # substitute, BCE(D(G(x)), 1) = -log D(G(x)) on every joint (G pushes every joint towards "real"; strong
    # gradients while D rejects G's output).
    "g_adv_form": "paper",
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
    "batch_size": 8,  # images per step and process (paper's G: batch limited by a 12 GB GPU)
    # Global batch (batch_size x processes) that lr and disc_lr are set for; another global batch scales both,
    # by the square root of the ratio for RMSprop/Adam, linearly for SGD (training/build.py: batch_lr_scale
    # says why). 0 = lr and disc_lr as set, whatever the batch.
    "lr_base_batch": 0,
    "heatmap_fg_weight": 0.0,  # squared errors weighted by 1 + w * target heatmap (paper: 0, plain MSE)
    "grad_clip": 0.0,  # max global grad norm; 0 disables
    # --- runtime -------------------------------------------------------------------------
    "workers": -1,  # DataLoader worker processes per rank; -1 = from the cores and GPUs (training/data.py)
    # auto | bf16 | fp16 | off. auto: CUDA bf16 from compute capability 8.0, fp16 below; CPU bf16 only where it
    # runs natively (AMX or AVX512-BF16), fp32 elsewhere (runtime/device.py: choose_precision)
    "amp": "auto",
    "channels_last": True,  # NHWC activations (faster convolutions on CPU and tensor cores)
    "compile": False,  # torch.compile the models
    "flip_test": True,  # validation during training averages with the mirrored image (test.py: --no_flip)
    "snapshot_epochs": (),  # keep epoch_<N>.pt after N completed epochs, e.g. the supervised G to start P-GAN from
    "checkpoint_every": 0,  # also save last.pt every N iterations inside an epoch; 0 = only at epoch end
    "print_every": 50,  # iterations between text log lines (and loss read-backs)
    "seed": 0,  # random seed of the run
    "deterministic": False,  # deterministic algorithms (bit-exact resume on CPU; slower on GPU)
    "sync_bn": False,  # convert BatchNorm to SyncBatchNorm under DDP
}

# Keys computed from the others whenever a config is resolved: they cannot be set, and are saved with the rest
# so that config.json and checkpoints describe the run. key -> (rule, the rule in words for the one-line error).
DERIVED = {
    "output_res": (lambda c: c["input_res"] // 4, "input_res / 4: the hourglass stem downsamples by 4"),
}

# Allowed values, checked whenever a config is resolved (defaults, preset, --set, a checkpoint's config).
CHOICES = {
    "method": ("supervised", "adversarial"),
    "mse_scale": ("pixel_mean", "eq1_literal"),
    "g_adv_form": ("paper", "nonsaturating"),
    "adv_stacks": ("last", "all"),
    "optimizer": ("RMSprop", "Adam", "SGD"),
    "amp": ("auto", "bf16", "fp16", "off"),
}
# The type each key's value must have. Declared apart from the values above, so that a hand edit of a value
# there is checked like a preset or a --set (``config.checked_defaults``) instead of becoming the type expected.
TYPES = {
    **dict.fromkeys(("method", "pretrained", "mse_scale", "g_adv_form", "adv_stacks", "optimizer", "amp"), str),
    **dict.fromkeys(("use_pose_disc", "use_conf_disc", "flip", "cache_images", "reduced_decode", "device_targets",
                     "predict_occlusion", "g_error_step", "channels_last", "compile", "flip_test", "deterministic",
                     "sync_bn"), bool),
    **dict.fromkeys(("input_res", "synthetic_train_size", "synthetic_val_size", "synthetic_canvas",
                     "synthetic_seed", "num_stacks", "channels", "depth", "num_blocks", "disc_channels",
                     "disc_depth", "gen_iters", "disc_iters", "adversarial_warmup_epochs", "epochs", "batch_size",
                     "lr_base_batch", "workers", "checkpoint_every", "print_every", "seed"), int),
    **dict.fromkeys(("sigma", "rotation", "scale_min", "scale_max", "color_jitter", "box_margin", "alpha", "beta",
                     "delta", "epsilon", "disc_lr", "lr", "weight_decay", "momentum", "lr_gamma",
                     "heatmap_fg_weight", "grad_clip"), float),
    **dict.fromkeys(("mean", "std", "lr_milestones", "snapshot_epochs"), tuple),
}
# Keys whose value may be None: "not set, follow the dataset" (resolved when the run's dataset is known).
NUMBER_OR_NONE = ("delta",)
# Values renamed since checkpoints and scripts were written: read as their new name.
RENAMED_VALUES = {"mse_scale": {"paper": "eq1_literal"}}
# (low, high) bounds, both inclusive; None = unbounded on that side. Keys not listed here or in CHOICES
# are booleans, strings or tuples checked by type and by ``config.check_relations``.
RANGES = {
    "input_res": (16, 2048), "sigma": (0.1, 50.0), "rotation": (0.0, 180.0),
    "scale_min": (0.05, 10.0), "scale_max": (0.05, 10.0), "color_jitter": (0.0, 1.0), "box_margin": (0.1, 10.0),
    "synthetic_train_size": (1, None), "synthetic_val_size": (1, None), "synthetic_canvas": (16, 4096),
    "synthetic_seed": (0, None),
    "num_stacks": (1, 16), "channels": (4, 4096), "depth": (1, 6), "num_blocks": (1, 8),
    "disc_channels": (4, 4096), "disc_depth": (1, 6), "alpha": (0.0, None), "beta": (0.0, None),
    "delta": (1e-6, None), "epsilon": (1e-9, None), "gen_iters": (1, 100), "disc_iters": (1, 100),
    "disc_lr": (1e-12, 10.0), "adversarial_warmup_epochs": (0, None),
    "lr": (1e-12, 10.0), "weight_decay": (0.0, 1.0), "momentum": (0.0, 0.999999), "lr_gamma": (1e-6, 1.0),
    "epochs": (1, None), "batch_size": (1, None), "heatmap_fg_weight": (0.0, None), "grad_clip": (0.0, None),
    "lr_base_batch": (0, None),
    "workers": (-1, 256), "checkpoint_every": (0, None), "print_every": (1, None), "seed": (0, 2**63 - 1),
}
