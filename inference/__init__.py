"""Inference floor, below training: used by training's validation, test.py and predict.py.

``weights``: safe checkpoint loading and G rebuilt from a checkpoint or export.
``predict``: G on a batch of crops (flip test) decoded to original px, and predict.py's logic on arbitrary image
and video files.
``evaluate``: G over a split's loader (sharded across ranks, gathered) and scored: training's validation and
test.py's checkpoint evaluation.
``metrics``: the PCK / PCKh tables and curves (pure functions of predictions and labels).
``scoring``: predictions scored against a split's labels; the predictions and metrics files.
``submission``: the MPII test-set .mat. ``export``: weights-only files and ONNX.
"""
