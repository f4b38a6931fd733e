"""The conformal guarantees of a model run, torch-free: the kernel (``kernel``: the conformal
quantile, the Dice lower bound, conformal risk control of the false-negative rate), the bounds at
a level from what a calibration file stores (``bounds``), and the calibration file itself
(``calibration_file``). Evaluation writes the file, predict reads it, the analysis applies the
kernel to every run's tables.
"""
