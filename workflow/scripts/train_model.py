"""Rule train_model: one model run (study, dataset, arch, patch, seed) -> contract 3."""

from segrobust.jobs import run_script


def main(snakemake):
    # Imported here, not above: the job process hands the job to a preloaded child
    # (segrobust.preload), which has these imported already.
    import time

    from segrobust.contract import Run
    from segrobust.jobs import (
        PROGRESS_SECONDS,
        Throttle,
        console,
        gpu_placement,
        job,
        process_start,
        train_summary,
    )
    from segrobust.training.device import describe_device, job_device
    from segrobust.training.train import TrainSettings, train_run

    spec, w = snakemake.params.spec, snakemake.wildcards
    run = Run(w.study, w.dataset, w.arch, w.patch, int(w.seed))
    what = f"{run.study} {run.path}"
    settings = TrainSettings.from_config(spec["train"], spec["patch_size"], spec["inference"])
    with (
        job(snakemake, uses_torch=True) as log,
        job_device(snakemake.params.device, **gpu_placement(snakemake), log=log) as device,
    ):
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
    run_script(main, snakemake)  # noqa: F821 (injected by Snakemake)
