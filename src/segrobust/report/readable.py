"""Text the analysis wrote for programs and people alike, shown to people with display names.

The analysis tables keep internal ids in their sentences and labels (``recipe.csv``'s
``sentence`` and ``regime``, ``findings.csv``'s ``comparison``: "For speckle severity 3, use
noskip_unet"), because programs read those tables too and the ids are what the rest of each
row holds. Wherever a person reads such a text (the report's Answer, the findings table,
``segrobust predict``'s page) it passes through `readable`, which replaces every whole-word id
of an architecture or a perturbation with its display name (`segrobust.report.names`): "For
speckle noise severity 3, use No-skip U-Net".

A whole word is delimited by anything but a letter, digit or underscore, so ``unet`` is not
found inside ``noskip_unet``, nor inside a dataset name such as ``unet_data``. Ids whose display
name is the id itself (``blur``, ``motion``) are left alone, and so is ``none``, the clean test
set's perturbation id, which in running text is the English word.
"""

from __future__ import annotations

import functools
import re

from segrobust.report.names import PERTURBATION_NAMES, display_name, perturbation_display_name
from segrobust.spec.architectures import ARCHITECTURES


@functools.cache
def _replacements() -> tuple[re.Pattern, dict[str, str]]:
    names = {arch: display_name(arch) for arch in ARCHITECTURES}
    names.update((p, perturbation_display_name(p)) for p in PERTURBATION_NAMES if p != "none")
    names = {key: shown for key, shown in names.items() if key != shown}
    # Display names are matched too and kept as they are, so that a text already readable
    # stays so ("speckle noise" is not made "speckle noise noise"); longest first, so that a
    # name is never matched by a shorter one it contains.
    words = sorted({*names, *names.values()}, key=len, reverse=True)
    alternatives = "|".join(map(re.escape, words))
    pattern = re.compile(rf"(?<![A-Za-z0-9_])({alternatives})(?![A-Za-z0-9_])")
    return pattern, names


def readable(text: str) -> str:
    """``text`` with every architecture and perturbation id replaced by its display name
    (idempotent: a readable text is returned unchanged)."""
    pattern, names = _replacements()
    return pattern.sub(lambda match: names.get(match.group(1), match.group(1)), str(text))
