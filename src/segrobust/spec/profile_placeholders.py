"""The SLURM profile's placeholders never reach ``sbatch``.

``profiles/slurm/config.yaml`` ships with ``EDIT_ME_...`` values for the partitions and the
account: Snakemake accepts any string there, so a profile used unedited passes a dry run and
then submits jobs to a partition that does not exist. The Snakefile checks the resources it was
given (`placeholder_settings`, from ``workflow.resource_settings``: ``default-resources`` and
``set-resources`` of the profile and the command line):

* at parse time, in the main process: a warning per placeholder (a dry run sees it; whether the
  run is a dry run is not known yet when the Snakefile is parsed);
* when a run starts (the Snakefile's ``onstart``, which Snakemake calls after building the DAG
  and before submitting the first job, and never for a dry run), `refuse_placeholders` stops a
  run with a non-local executor (SLURM) with an error naming each key to set. A local run does
  not use the partition or account, so it only gets the warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PLACEHOLDER = "EDIT_ME"


class ProfilePlaceholderError(ValueError):
    """A cluster run was started with a profile value still a placeholder."""


def _shown(value: Any) -> str:
    """A resource as the profile spells it: Snakemake's ``Resource`` keeps the expression
    (``"EDIT_ME_partition"``) in ``raw``; a plain value is itself."""
    raw = getattr(value, "raw", None)
    return str(raw if raw is not None else getattr(value, "_value", value))


def _items(resources: Mapping[str, Any] | None) -> Iterable[tuple[str, Any]]:
    return (resources or {}).items()


def placeholder_settings(
    default_resources: Mapping[str, Any] | None,
    overwrite_resources: Mapping[str, Mapping[str, Any]] | None,
) -> list[str]:
    """Every resource still holding a placeholder, as the profile's line that sets it:
    ``default-resources: slurm_partition="EDIT_ME_partition"`` or ``set-resources:
    train_model:slurm_partition="EDIT_ME_gpu_partition"``."""
    found = [
        f"default-resources: {name}={_shown(value)}"
        for name, value in _items(default_resources)
        if PLACEHOLDER in _shown(value)
    ]
    for rule, resources in _items(overwrite_resources):
        found += [
            f"set-resources: {rule}:{name}={_shown(value)}"
            for name, value in _items(resources)
            if PLACEHOLDER in _shown(value)
        ]
    return found


def explain(found: list[str]) -> str:
    """What to do about the placeholders ``found``."""
    return (
        "the execution profile still has placeholder values: " + "; ".join(found) + ". Set each "
        "to your cluster's value (partitions: `sinfo -s`; account: `sacctmgr show assoc "
        "user=$USER format=account`), or delete the line to use the cluster's default "
        "(docs/cluster.md, 'Edit the profile once')"
    )


def refuse_placeholders(
    default_resources: Mapping[str, Any] | None,
    overwrite_resources: Mapping[str, Mapping[str, Any]] | None,
    *,
    local: bool,
) -> None:
    """Raise `ProfilePlaceholderError` naming every placeholder when the run's executor is not
    local (a cluster would receive them); a local run ignores partitions and accounts."""
    found = placeholder_settings(default_resources, overwrite_resources)
    if found and not local:
        raise ProfilePlaceholderError(f"refusing to submit jobs: {explain(found)}")
