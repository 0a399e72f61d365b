"""Inference floor, below training: used by training's validation, test.py and predict.py.

``weights``: safe checkpoint loading and G rebuilt from a checkpoint or export.
``predict``: G over batches (flip test), heatmaps decoded to original px, validation and test-set scoring.
``metrics``: the PCK / PCKh tables and curves (pure functions of predictions and labels).
``scoring``: a split's labels fed to the metrics; predictions and metrics files.
``predictor``: predict.py's logic on arbitrary image files.
"""
