"""Newell et al.'s 8-stack hourglass with 256-channel residuals (the supervised reference model)."""

OVERRIDES = {
    "num_stacks": 8,
    "channels": 256,
    "predict_occlusion": False,
}
