"""Rule train_model: one model run (study, dataset, arch, patch, seed) -> contract 3."""

from segrobust.jobs import job
from segrobust.training.device import resolve_device
from segrobust.training.train import TrainSettings, train_run


def main(snakemake):
    with job(snakemake, uses_torch=True) as log:
        spec = snakemake.params.spec
        inference = spec["inference"] or {}
        train = dict(spec["train"], pos_neg_ratio=tuple(spec["train"]["pos_neg_ratio"]))
        settings = TrainSettings(
            **train,
            patch_size=tuple(spec["patch_size"]) if spec["patch_size"] else None,
            sw_overlap=inference.get("overlap", 0.25),
            sw_mode=inference.get("mode", "gaussian"),
            sw_batch_size=inference.get("sw_batch_size", 4),
        )
        train_run(
            snakemake.input.dataset,
            arch=spec["arch"],
            spatial_dims=spec["spatial_dims"],
            model_kwargs=spec["model_kwargs"],
            settings=settings,
            seed=int(snakemake.wildcards.seed),
            device=resolve_device(snakemake.params.device),
            out_model=snakemake.output.model,
            out_log=snakemake.output.train_log,
            out_patches=snakemake.output.patches,
            checkpoint_path=snakemake.params.checkpoint,
            log=log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
