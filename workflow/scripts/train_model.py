"""Rule train_model: one model run (study, dataset, arch, patch, seed) -> contract 3."""

import time

from segrobust.contract import Run
from segrobust.execution.console import PROGRESS_SECONDS, Throttle, console, train_summary
from segrobust.execution.gpu_allocation import holds_gpu
from segrobust.execution.job import job, process_start
from segrobust.training.device import describe_device, job_device, set_compute_threads
from segrobust.training.train import TrainSettings, train_run


def main(snakemake):
    spec, w = snakemake.params.spec, snakemake.wildcards
    run = Run(w.study, w.dataset, w.arch, w.patch, int(w.seed))
    what = f"{run.study} {run.path}"
    settings = TrainSettings.from_config(spec["train"], spec["patch_size"], spec["inference"])
    with (
        job(snakemake) as log,
        job_device(
            snakemake.params.device, holds_gpu_resource=holds_gpu(snakemake.resources), log=log
        ) as device,
    ):
        set_compute_threads(snakemake.threads)
        result = train_run(
            snakemake.input.dataset,
            run=run,
            spatial_dims=spec["spatial_dims"],
            model_kwargs=spec["model_kwargs"],
            settings=settings,
            device=device,
            out_model=snakemake.output.model,
            out_log=snakemake.output.train_log,
            out_patches=snakemake.output.patches,
            checkpoint_path=snakemake.params.checkpoint,
            log=log,
            progress=Throttle(lambda line: console(f"training {what}: {line}"), PROGRESS_SECONDS),
        )
        seconds = time.time() - process_start()
        console(train_summary(what, result, settings.epochs, seconds, describe_device(device)))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
