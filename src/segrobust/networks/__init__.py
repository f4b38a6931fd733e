"""The networks the studies compare, one module per architecture (as MONAI's ``networks/nets``),
and the model file that stores a trained one.

``build_model`` builds an architecture by its config name from its record
(``segrobust.spec.architectures``) with 1 input and 1 output channel of logits;
``check_input_size`` says whether an input size suits an architecture (arithmetic rules in the
torch-free ``segrobust.spec.input_sizes``, which config validation uses at parse time).
"""

from segrobust.networks.catalog import build_model
from segrobust.spec.input_sizes import check_input_size

__all__ = ["build_model", "check_input_size"]
