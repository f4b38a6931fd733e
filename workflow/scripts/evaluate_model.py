"""Rule evaluate_model: one model run on every test condition -> per-image metrics (contract 4)."""

from pathlib import Path

from segrobust.contract import Run
from segrobust.evaluation.evaluate import conditions_from_specs, evaluate_run
from segrobust.evaluation.infer import SlidingWindow
from segrobust.jobs import job
from segrobust.training.device import resolve_device


def main(snakemake):
    with job(snakemake, uses_torch=True) as log:
        w, params = snakemake.wildcards, snakemake.params
        device = resolve_device(params.device)
        evaluate_run(
            snakemake.input.model,
            conditions_from_specs(params.conditions),
            run=Run(w.study, w.dataset, w.arch, w.patch, int(w.seed)),
            nsd_tolerance=params.evaluation["nsd_tolerance"],
            nsd_unit=params.evaluation["nsd_unit"],
            out_per_image=snakemake.output.per_image,
            out_fnr=snakemake.output.fnr,
            window=SlidingWindow.from_config(params.window) if params.window else None,
            device=device,
            amp=device.type == "cuda",
            predictions_dir=snakemake.output.predictions if params.save_predictions else None,
            log=log,
        )
        # declared output: present (empty) when predictions are not saved
        Path(snakemake.output.predictions).mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
