"""How wildcard values are spelled in paths, in one place so rules and library agree."""

from __future__ import annotations


def format_alpha(alpha: float) -> str:
    """Alpha as it appears in dataset names and paths: shortest general form (0.1, 0.85)."""
    return f"{float(alpha):g}"


def texture_dataset_name(direction: str, alpha: float) -> str:
    """Name of the texture-study dataset for one blend direction and alpha."""
    return f"texture-{direction}-{format_alpha(alpha)}"


def condition_name(perturbation: str, severity: int) -> str:
    """Name of a perturbed test condition; severity 0 means the clean test split."""
    return "clean" if severity == 0 else f"{perturbation}-s{severity}"
