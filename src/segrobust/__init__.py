"""segrobust: measures which segmentation architecture to trust under which conditions.

The library behind the Snakemake pipeline: data generation and preparation, task complexity,
perturbations, architectures, training, inference, metrics, analysis and reporting.
"""

__version__ = "0.1.0"
