"""Execution plumbing: how a pipeline job runs, never what it writes.

- :mod:`~segrobust.execution.job`: the job's log file, Python logging and warnings routed into
  it, the traceback of a failure, and the timing lines ``benchmarks/job_overhead.py`` reads.
- :mod:`~segrobust.execution.console`: the few lines a person follows on the console (one per
  finished model job, a throttled progress line for long ones, the run's closing message).
- :mod:`~segrobust.execution.gpu_allocation`: whether the batch system or the workstation gave
  a job a GPU (torch-free).
- :mod:`~segrobust.execution.gpu_slots`: which GPU a job takes: one job per GPU, claimed with
  ``flock``'ed slot files (torch-free).

The rule: nothing here may change a byte of a job's outputs. The rules' code versions leave this
package out, so editing it re-runs no job; anything that does decide an output (the device, the
seeds, torch's thread count: it changes float reduction order on the CPU) lives in the layer
that computes (``segrobust.training.device``). This package imports no other ``segrobust``
package, so every layer may use it without an import cycle.
"""
