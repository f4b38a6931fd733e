"""Rule train_model: one model run (study, dataset, arch, patch, seed) -> contract 3."""

from segrobust.contract import Run
from segrobust.jobs import job
from segrobust.training.device import resolve_device
from segrobust.training.train import TrainSettings, train_run


def main(snakemake):
    with job(snakemake, uses_torch=True) as log:
        spec, w = snakemake.params.spec, snakemake.wildcards
        train_run(
            snakemake.input.dataset,
            run=Run(w.study, w.dataset, w.arch, w.patch, int(w.seed)),
            spatial_dims=spec["spatial_dims"],
            model_kwargs=spec["model_kwargs"],
            settings=TrainSettings.from_config(
                spec["train"], spec["patch_size"], spec["inference"]
            ),
            device=resolve_device(snakemake.params.device),
            out_model=snakemake.output.model,
            out_log=snakemake.output.train_log,
            out_patches=snakemake.output.patches,
            checkpoint_path=snakemake.params.checkpoint,
            log=log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
