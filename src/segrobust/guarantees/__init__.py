"""The conformal guarantees of a model run, torch-free: the kernel (``kernel``: the conformal
quantile, the Dice lower bound, conformal risk control of the false-negative rate), the bounds at
a level from what a calibration file stores (``bounds``), the joint applicability check that says
whether a new image is like the calibration images and its flag level (``applicability``), and
the calibration file itself (``calibration_file``, validated on load by ``calibration_schema``).
Evaluation writes the file, predict reads it, the analysis applies the kernel and the check to
every run's tables.
"""
