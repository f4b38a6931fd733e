"""Which of the given models segments an image: the one the study's recipe says to use there.

Every image is first segmented by every given model; what the recipe's regimes are defined by is
measured under the mean of their predicted masks (`segrobust.predict.recipe_lookup`), and then:

* the regime **recommends** an architecture that is among the given models: its run (the first
  by patch and seed) segments the image;
* the regime found its leaders **equivalent**: the best calibrated of the equivalent
  architectures among the given models (highest mean Dice on its calibration images), and the
  reason says it was chosen among equivalents;
* the regime is **inconclusive** (the runs disagree, or the CI reaches below the minimum
  effect) and its leader, the architecture with the highest mean Dice there, is among the given
  models: the leader, and the reason says it is not a recommendation. The regime's own
  measurement is the best estimate there is for such an image; the best calibrated model,
  measured on in-domain images, can be the regime's worst (on the default study's most
  speckled images: U-Net, mean Dice 0.29 there, against the No-skip U-Net's 0.39 with all 9
  run pairs ahead but a CI reaching below the minimum effect);
* otherwise (no regime applies, or its architecture was not given): the best calibrated of all
  given models, with the reason.

For the context study the regimes are per patch size: each patch size of the given models
places the image inside or outside its own training range, and the usable answer whose leader
has the highest mean Dice decides (a recommendation before an equivalent set).

The reason is a sentence a person reads ("speckle noise severity 3 regime: noise 0.21 within
0.18 to 0.35 -> No-skip U-Net, recommended there"), with display names; ``how`` says which case
applied (``CHOSEN_BY``), so the summary can count them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from segrobust.analysis.recipe import EQUIVALENT, RECOMMENDED
from segrobust.predict.recipe_lookup import Measured, RecipeAnswer, StudyRecipe
from segrobust.report.names import display_name

#: How a model was chosen (the ``chosen_by`` column of predictions.csv).
ONLY_MODEL = "the only model given"
BY_RECOMMENDATION = "recipe: recommended"
BY_EQUIVALENCE = "recipe: equivalent"
BY_LEADER = "recipe: leader, inconclusive"
FALLBACK = "fallback: best calibrated"
CHOSEN_BY: tuple[str, ...] = (
    ONLY_MODEL, BY_RECOMMENDATION, BY_EQUIVALENCE, BY_LEADER, FALLBACK,
)  # fmt: skip
#: Which usable answer decides when several do (the context study's patch sizes): a
#: recommendation before an equivalent set before an inconclusive regime's leader.
_PRECEDENCE = {BY_RECOMMENDATION: 0, BY_EQUIVALENCE: 1, BY_LEADER: 2}


@dataclass(frozen=True)
class Candidate:
    """What a model choice needs to know of one given model."""

    arch: str
    patch: str
    calibration_dice: float  # mean Dice on its calibration images (NaN without any)


@dataclass(frozen=True)
class Choice:
    """The chosen model (``index`` into the given models), how and why, and the answer used."""

    index: int
    how: str
    reason: str
    answer: RecipeAnswer | None


def _dice(candidate: Candidate) -> float:
    value = candidate.calibration_dice
    return value if math.isfinite(value) else -math.inf


def _best(candidates: Sequence[Candidate], indices: Sequence[int]) -> int:
    return max(indices, key=lambda i: (_dice(candidates[i]), -i))


def _dice_text(candidate: Candidate) -> str:
    value = candidate.calibration_dice
    return "no calibration Dice" if not math.isfinite(value) else f"calibration Dice {value:.3f}"


def _usable(answer: RecipeAnswer, candidates, pool) -> tuple[str, list[int]]:
    """(how, the given models the answer lets us use) for one answer over a pool of models."""
    regime = answer.regime
    if regime is None:
        return FALLBACK, []
    if regime.decision == RECOMMENDED:
        return BY_RECOMMENDATION, [i for i in pool if candidates[i].arch == regime.recommended]
    if regime.decision == EQUIVALENT:
        return BY_EQUIVALENCE, [i for i in pool if candidates[i].arch in regime.equivalent]
    return BY_LEADER, [i for i in pool if regime.leader and candidates[i].arch == regime.leader]


def _why_not(answer: RecipeAnswer) -> str:
    """Why an answer chose no model: no regime, an undecided regime, or absent models."""
    regime = answer.regime
    if regime is None:
        return answer.rule
    head = f"{regime.shown} regime: {answer.rule}"
    if regime.decision == RECOMMENDED:
        return f"{head}; recommends {display_name(regime.recommended)}, not among the models given"
    if regime.decision == EQUIVALENT:
        members = ", ".join(display_name(a) for a in regime.equivalent)
        return f"{head}; {members} equivalent there, none among the models given"
    if not regime.leader:
        return f"{head}; {regime.decision} there"
    return f"{head}; {regime.decision} there, its leader {display_name(regime.leader)} not given"


def choose_model(
    candidates: Sequence[Candidate],
    recipe: StudyRecipe | None,
    measure: Callable[[], Measured],
) -> Choice:
    """The model for one image (module docstring). ``measure`` is called only when the recipe
    has to place the image (several models, or one model and a recipe to quote)."""
    if recipe is None:
        return Choice(0, ONLY_MODEL, ONLY_MODEL, None)
    measured = measure()
    patches = (
        list(dict.fromkeys(c.patch for c in candidates)) if recipe.study == "context" else [None]
    )
    found = []
    answers = []
    for patch in patches:
        pool = [i for i, c in enumerate(candidates) if patch is None or c.patch == patch]
        answer = recipe.answer(measured, patch)
        answers.append(answer)
        how, usable = _usable(answer, candidates, pool)
        if usable:
            found.append((_PRECEDENCE[how], -answer.regime.mean_dice, how, usable, answer))
    if len(candidates) == 1:
        return Choice(0, ONLY_MODEL, ONLY_MODEL, answers[0])
    if found:
        _, _, how, usable, answer = min(found, key=lambda item: item[:2])
        chosen = _best(candidates, usable) if how == BY_EQUIVALENCE else usable[0]
        name = display_name(candidates[chosen].arch)
        head = f"{answer.regime.shown} regime: {answer.rule}"
        if how == BY_RECOMMENDATION:
            return Choice(chosen, how, f"{head} -> {name}, recommended there", answer)
        if how == BY_LEADER:
            return Choice(
                chosen,
                how,
                f"{head}; {answer.regime.decision} there -> {name}, the highest mean Dice there "
                f"({answer.regime.mean_dice:.2f}), not a recommendation",
                answer,
            )
        members = ", ".join(display_name(a) for a in answer.regime.equivalent)
        return Choice(
            chosen,
            how,
            f"{head} -> {name}, the best calibrated ({_dice_text(candidates[chosen])}) of "
            f"{members}, equivalent there",
            answer,
        )
    chosen = _best(candidates, range(len(candidates)))
    why = "; ".join(_why_not(a) for a in answers)
    return Choice(
        chosen,
        FALLBACK,
        f"{why} -> {display_name(candidates[chosen].arch)}, the best calibrated model given "
        f"({_dice_text(candidates[chosen])})",
        answers[0],
    )
