"""Rule predict_images: the config's images folder -> masks, predictions.csv, summary.html."""

from segrobust.execution.job import job
from segrobust.predict.batch import predict_folder
from segrobust.training.device import resolve_device, set_compute_threads


def main(snakemake):
    with job(snakemake) as log:
        set_compute_threads(snakemake.threads)
        params = snakemake.params
        predict_folder(
            snakemake.input.images,
            snakemake.output[0],
            model_paths=list(snakemake.input.models),
            recipe_path=snakemake.input.recipe,
            shift_coverage_path=snakemake.input.shift_coverage,
            confidence=params.confidence,
            fnr_level=params.fnr_level,
            save_probabilities=params.save_probabilities,
            device=resolve_device(params.device),
            overwrite=True,  # Snakemake owns the output folder
            log=log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
