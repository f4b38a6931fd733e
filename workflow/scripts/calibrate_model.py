"""Rule calibrate_model: one evaluated model run -> calibration.json beside its model.pt."""

from segrobust.contract import Run
from segrobust.evaluation.calibration import calibrate_run
from segrobust.jobs import job
from segrobust.training.device import resolve_device


def main(snakemake):
    with job(snakemake, uses_torch=True) as log:
        w, params = snakemake.wildcards, snakemake.params
        device = resolve_device(params.device)
        calibrate_run(
            snakemake.input.model,
            snakemake.input.per_image,
            snakemake.input.fnr,
            snakemake.input.dataset,
            run=Run(w.study, w.dataset, w.arch, w.patch, int(w.seed)),
            alpha=params.alpha,
            fnr_level=params.fnr_level,
            window=params.window,
            out=snakemake.output[0],
            device=device,
            amp=device.type == "cuda",
            log=log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
