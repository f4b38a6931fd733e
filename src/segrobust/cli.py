"""The ``segrobust`` console command (installed with the package).

    segrobust predict --model RUN --images DIR --out DIR

segments every NIfTI image of DIR with a trained, calibrated model run, exactly as the
workflow's ``predict_images`` rule does (``segrobust.predict.batch.predict_folder``), for users
who have no workflow open. Exit status: 0 when at least one image was segmented (failures are
listed in ``failures.csv`` and on stderr), 1 when nothing could be segmented, the models cannot
be used (a model file holding anything but tensors and plain data is refused unread) or the
output folder cannot be used (``segrobust.predict.output_folder``), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from segrobust.data.image_header import DEFAULT_MAX_IMAGE_GB, image_limit
from segrobust.spec.predict_targets import DEFAULT_CONFIDENCE, DEFAULT_FNR_LEVEL

DESCRIPTION = """\
Segment new images with trained segrobust model runs and rate each mask's trustworthiness.
With several runs (and --recipe), each image is segmented with the architecture the study's
recipe recommends for the regime the image falls in (measured on the image: its noise level
and how that grows with brightness, its complexity or predicted foreground ratio), else with
the best calibrated run, and the reason is given per image. Each mask gets a conformal Dice
lower bound ("Dice >= 0.82 with 90% confidence") and the threshold of a mask whose
false-negative rate is controlled; both are withheld when the image is unlike the images the
model was calibrated on (a joint check of its statistics and the model's own features). Writes
masks in each input's own geometry, predictions.csv, failures.csv and a one-page summary.html
to --out.
"""

EPILOG = """\
examples:
  segrobust predict --model results/perturbation/models/texture_demo/unet/pfull/seed1 \\
      --images my_images --out my_predictions
  segrobust predict --model results/perturbation/models/texture_demo \\
      --recipe results/analysis/recipe.csv --images my_images --out my_predictions \\
      --shift-coverage results/analysis/shift_coverage.csv
"""


def _level(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def _gigabytes(text: str) -> float:
    value = float(text)
    if not 0.001 <= value <= 1000:  # finite: NaN and inf fail both comparisons
        raise argparse.ArgumentTypeError(f"must lie between 0.001 and 1000 (GB), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand, ``predict``."""
    parser = argparse.ArgumentParser(prog="segrobust", description="segrobust command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict",
        help="segment new images with a confidence rating",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="PATH",
        help="a model run folder (holding model.pt and calibration.json), a model.pt, or a "
        "folder of runs; repeat it or give a folder of runs to let the recipe choose per image",
    )
    predict.add_argument("--images", required=True, metavar="DIR", help="folder of NIfTI images")
    predict.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder: new or empty, or (with --overwrite) one an earlier run of this "
        "command wrote; never the images folder, inside it or around it, nor a symbolic link",
    )
    predict.add_argument(
        "--recipe",
        metavar="CSV",
        help="the study's recipe table (results/analysis/recipe.csv, read with "
        "regime_ranges.csv beside it); needed with several models",
    )
    predict.add_argument(
        "--shift-coverage",
        metavar="CSV",
        help="the study's per-shift coverage table (results/analysis/shift_coverage.csv): the "
        "summary page then states where the rating was measured to hold",
    )
    predict.add_argument(
        "--confidence",
        type=_level,
        default=DEFAULT_CONFIDENCE,
        help="confidence of the Dice lower bound (default %(default)s, the workflow's "
        "1 - analysis.conformal_alpha)",
    )
    predict.add_argument(
        "--fnr-level",
        type=_level,
        default=DEFAULT_FNR_LEVEL,
        help="false-negative rate the controlled mask keeps on average (default %(default)s, the "
        "workflow's analysis.fnr_level)",
    )
    predict.add_argument(
        "--save-probabilities", action="store_true", help="also write the probability maps"
    )
    predict.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the network runs (default auto: CUDA when present)",
    )
    predict.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files an earlier run wrote to --out (listed in its "
        ".segrobust-predict.json); every other file there is kept",
    )
    predict.add_argument(
        "--max-image-gb",
        type=_gigabytes,
        default=DEFAULT_MAX_IMAGE_GB,
        metavar="GB",
        help="refuse an image whose header declares more than this once read (default "
        "%(default)s, the workflow's max_image_gb)",
    )
    return parser


def run_predict(args: argparse.Namespace) -> int:
    """The ``predict`` subcommand; returns the exit status."""
    from segrobust.data.dataset import DataError  # PredictError is a RuntimeError
    from segrobust.predict.batch import predict_folder
    from segrobust.training.device import resolve_device

    try:
        device = resolve_device(args.device)
        with image_limit(args.max_image_gb):
            result = predict_folder(
                args.images,
                args.out,
                model_paths=args.model,
                recipe_path=args.recipe,
                shift_coverage_path=args.shift_coverage,
                confidence=args.confidence,
                fnr_level=args.fnr_level,
                save_probabilities=args.save_probabilities,
                device=device,
                overwrite=args.overwrite,
                log=lambda line: print(line, file=sys.stderr),
            )
    except (DataError, ValueError, OSError, RuntimeError) as exc:
        print(f"segrobust predict: {exc}", file=sys.stderr)
        return 1
    if not result.failures.empty:
        print(
            f"segrobust predict: {len(result.failures)} file(s) not segmented: see "
            f"{result.out_dir / 'failures.csv'}",
            file=sys.stderr,
        )
    print(result.out_dir / "summary.html")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segrobust`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "predict":
        return run_predict(args)
    return 2  # argparse refuses unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
