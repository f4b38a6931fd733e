"""Rule evaluate_model: one model run on every test condition -> per-image metrics (contract 4)
and calibration.json beside model.pt."""

import time
from pathlib import Path

from segrobust.contract import Run
from segrobust.evaluation.evaluate import conditions_from_specs, evaluate_run
from segrobust.evaluation.infer import SlidingWindow
from segrobust.execution.console import PROGRESS_SECONDS, Throttle, console, evaluate_summary
from segrobust.execution.gpu_allocation import holds_gpu
from segrobust.execution.job import job, process_start
from segrobust.training.device import describe_device, job_device, set_compute_threads


def main(snakemake):
    w, params = snakemake.wildcards, snakemake.params
    run = Run(w.study, w.dataset, w.arch, w.patch, int(w.seed))
    what = f"{run.study} {run.path}"
    with (
        job(snakemake) as log,
        job_device(
            params.device, holds_gpu_resource=holds_gpu(snakemake.resources), log=log
        ) as device,
    ):
        set_compute_threads(snakemake.threads)
        per_image = evaluate_run(
            snakemake.input.model,
            conditions_from_specs(params.conditions),
            run=run,
            nsd_tolerance=params.evaluation["nsd_tolerance"],
            nsd_unit=params.evaluation["nsd_unit"],
            out_per_image=snakemake.output.per_image,
            out_fnr=snakemake.output.fnr,
            out_calibration=snakemake.output.calibration,
            out_applicability=snakemake.output.applicability,
            window=SlidingWindow.from_config(params.window) if params.window else None,
            device=device,
            amp=device.type == "cuda",
            predictions_dir=snakemake.output.predictions if params.save_predictions else None,
            log=log,
            progress=Throttle(lambda line: console(f"evaluating {what}: {line}"), PROGRESS_SECONDS),
        )
        # declared output: present (empty) when predictions are not saved
        Path(snakemake.output.predictions).mkdir(parents=True, exist_ok=True)
        seconds = time.time() - process_start()
        console(evaluate_summary(what, per_image, seconds, describe_device(device)))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
