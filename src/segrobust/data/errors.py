"""The error of bad input data, in a module of its own so that light modules (imported when
Snakemake parses the workflow) can raise it without importing the dataset reader's numpy and
nibabel; ``segrobust.data.dataset`` re-exports it."""


class DataError(ValueError):
    """Bad input data; the message names the file and what is wrong with it."""
