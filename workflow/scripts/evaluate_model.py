"""Rule evaluate_model: one model run on every test condition -> per-image metrics (contract 4)."""

from pathlib import Path

from segrobust.evaluation.evaluate import conditions_from_specs, evaluate_run
from segrobust.jobs import job
from segrobust.training.device import resolve_device


def main(snakemake):
    with job(snakemake, uses_torch=True) as log:
        w = snakemake.wildcards
        inference = snakemake.params.inference or {}
        device = resolve_device(snakemake.params.device)
        evaluate_run(
            snakemake.input.model,
            conditions_from_specs(snakemake.params.conditions),
            run_info={
                "study": w.study,
                "dataset": w.dataset,
                "arch": w.arch,
                "seed": int(w.seed),
                "patch": w.patch,
            },
            nsd_tolerance=snakemake.params.nsd_tolerance,
            out_per_image=snakemake.output.per_image,
            out_fnr=snakemake.output.fnr,
            overlap=inference.get("overlap", 0.25),
            blend_mode=inference.get("mode", "gaussian"),
            sw_batch_size=inference.get("sw_batch_size", 4),
            device=device,
            amp=device.type == "cuda",
            predictions_dir=(
                snakemake.output.predictions if inference.get("save_predictions") else None
            ),
            log=log,
        )
        # declared output: present (empty) when predictions are not saved
        Path(snakemake.output.predictions).mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
