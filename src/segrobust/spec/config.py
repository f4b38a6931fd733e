"""Config validation at parse time: the JSON schema, with messages a user can act on.

Snakemake's own ``snakemake.utils.validate`` fills the schema's defaults into the config; before
it, :func:`check_against_schema` reports the first violation as the key path, the bad value and
what the schema allows, instead of jsonschema's raw dump. :func:`check_consistency` then checks what
one schema rule cannot express (references between keys, split fractions summing to one, keys a
source requires).

Before any of that, :func:`check_config_files` (called at the top of the Snakefile) reads the
workflow's own config file the way Snakemake is about to, and names the file and the line of an
empty file or a YAML syntax error, which Snakemake reports as "Config file is not valid JSON or
YAML" without either. Files given with ``--configfile`` are parsed by Snakemake's command line
before the Snakefile runs (``ConfigSettings`` in snakemake/settings/types.py), so a broken one
never reaches this check; ``python -m segrobust.spec.config FILE...`` checks them the same way.

Nothing here imports torch or MONAI: the Snakefile is parsed by every cluster job, so parse-time
checks must stay cheap.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the key and the allowed values."""


#: Keys a dataset entry must have for its source, and what each holds.
SOURCE_REQUIRED_KEYS = {
    "msd_import": {"path": "the directory holding imagesTr/, labelsTr/ and dataset.json"},
}


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse one config file as Snakemake does (YAML; JSON is YAML too), naming the file and,
    for a syntax error, the line and column.

    Raises:
        ConfigError: unreadable, not valid YAML, empty, or not a mapping at the top level.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{problem} {context}" if context else problem
        raise ConfigError(f"config file {path}{where}: not valid YAML: {detail}") from None
    if data is None:
        raise ConfigError(
            f"config file {path}: empty (no keys); a config file holds at least one key, e.g. "
            "`seeds: [1]`"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: the top level must be a mapping of keys, got a "
            f"{type(data).__name__}"
        )
    return data


def check_config_files(default: str | os.PathLike, given: Iterable[str | os.PathLike]) -> None:
    """Check the workflow's ``configfile:`` (``default``, if present: without it Snakemake names
    the missing path itself) and the ``--configfile`` files (``given``), in that order."""
    paths = ([Path(default)] if Path(default).exists() else []) + [Path(p) for p in given]
    for path in paths:
        read_config_file(path)


def key_path(parts: Iterable[Any]) -> str:
    """``['studies', 'texture', 'alphas', 2]`` -> ``studies.texture.alphas[2]``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _allowed(error: jsonschema.ValidationError) -> str:
    """What the violated schema rule allows, in words."""
    schema, kw = error.schema, error.validator
    if kw == "enum":
        return "one of: " + ", ".join(map(str, schema["enum"]))
    if kw == "not":
        return "nothing: the key was removed"
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "type"):
        bounds = []
        if "minimum" in schema:
            bounds.append(f">= {schema['minimum']}")
        if "exclusiveMinimum" in schema:
            bounds.append(f"> {schema['exclusiveMinimum']}")
        if "maximum" in schema:
            bounds.append(f"<= {schema['maximum']}")
        if "exclusiveMaximum" in schema:
            bounds.append(f"< {schema['exclusiveMaximum']}")
        kind = schema.get("type", "value")
        article = "an" if kind[0] in "aeiou" else "a"
        return f"{article} {kind}" + (" " + " and ".join(bounds) if bounds else "")
    if kw == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        return "known keys: " + ", ".join(known) if known else "no other keys"
    if kw in ("minItems", "maxItems", "uniqueItems", "required"):
        return error.message
    return error.message


def check_against_schema(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the most relevant schema violation in ``config``."""
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    where = key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        raise ConfigError(
            f"config key {where}: unknown key(s) {', '.join(map(repr, extra))}; {_allowed(error)}"
        )
    description = error.schema.get("description")
    hint = f" ({description.strip()})" if description else ""
    raise ConfigError(
        f"config key {where}: {error.instance!r} is not allowed; allowed: {_allowed(error)}{hint}"
    )


def check_consistency(config: Mapping[str, Any]) -> None:
    """Cross-key checks on a config whose defaults are filled in.

    - split fractions sum to 1;
    - every dataset a study names is defined under ``datasets`` with a source of the right
      dimensionality (2D for the perturbation study, 3D for the context study);
    - every context patch size fits the study's volumes and suits each architecture;
    - every texture shape (radius and irregularity, or their ranges) fits its image size.
    """
    split = config["split"]
    total = split["train"] + split["validation"] + split["test"]
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ConfigError(
            f"config key split: train + validation + test must sum to 1, got {total:g} "
            f"({split['train']:g} + {split['validation']:g} + {split['test']:g})"
        )
    datasets = config["datasets"]
    check_source_keys(datasets)
    studies = config["studies"]
    for study, dims in (("perturbation", 2), ("context", 3)):
        if not studies[study]["enabled"]:
            continue
        for i, name in enumerate(studies[study]["datasets"]):
            if name not in datasets:
                defined = ", ".join(sorted(datasets)) or "(none)"
                raise ConfigError(
                    f"config key studies.{study}.datasets[{i}]: dataset {name!r} is not defined "
                    f"under `datasets`; defined: {defined}"
                )
            if dataset_dims(datasets[name]) != dims:
                raise ConfigError(
                    f"config key studies.{study}.datasets[{i}]: dataset {name!r} is "
                    f"{dataset_dims(datasets[name])}D, the {study} study needs {dims}D datasets"
                )
    if studies["context"]["enabled"]:
        check_patch_sizes(config)
    check_texture_shapes(config)


def check_texture_shapes(config: Mapping[str, Any]) -> None:
    """The texture study's and every ``synthetic_texture`` dataset's shapes fit their images
    (``segrobust.data.shapes.check_shape_arguments``), so a radius range too large for the image
    size fails here, naming the key, not in a generation job."""
    from segrobust.data.shapes import check_shape_arguments  # numpy only; parse time allows it

    entries = []
    texture = config["studies"]["texture"]
    if texture["enabled"]:
        entries.append(("studies.texture.shape", texture["image_size"], texture["shape"]))
    for name, entry in config["datasets"].items():
        if entry["source"] == "synthetic_texture":
            entries.append((f"datasets.{name}", entry["image_size"], entry))
    for key, size, shape in entries:
        try:
            check_shape_arguments(size, shape["irregularity"], shape["radius"])
        except ValueError as exc:
            raise ConfigError(f"config key {key}: {exc}") from None


def check_source_keys(datasets: Mapping[str, Any]) -> None:
    """Every dataset entry has the keys its source requires (``SOURCE_REQUIRED_KEYS``)."""
    for name, spec in datasets.items():
        for key, meaning in SOURCE_REQUIRED_KEYS.get(spec.get("source"), {}).items():
            value = spec.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"config key datasets.{name}.{key}: missing or empty; source "
                    f"{spec['source']} needs it: {meaning}"
                )


def context_min_shape(config: Mapping[str, Any], name: str) -> list[int] | None:
    """The smallest shape every volume of the real 3D dataset ``name`` must have: the context
    study's largest patch, if the study is on and uses ``name``; else None.

    The prepare_dataset rule passes it as the ``min_shape`` preparation option, so a patch that
    does not fit a volume fails when the dataset is prepared, naming the volume, instead of
    inside MONAI's patch sampler at training time. (Synthetic volumes have a configured size
    and are checked here, by :func:`check_patch_sizes`.)
    """
    study = config["studies"]["context"]
    spec = config["datasets"].get(name, {})
    if not study["enabled"] or name not in study["datasets"]:
        return None
    if spec.get("source") in ("synthetic_spheres", "synthetic_texture"):
        return None
    return [max(study["patch_sizes"])] * 3


def with_context_min_shape(
    entry: Mapping[str, Any], config: Mapping[str, Any], name: str
) -> dict[str, Any]:
    """The prepare_dataset rule's entry of dataset ``name``, with ``min_shape`` added where
    :func:`context_min_shape` gives one (unchanged otherwise, so other datasets' params, and
    hence their outputs, stay as they were)."""
    min_shape = context_min_shape(config, name)
    return dict(entry) if min_shape is None else {**entry, "min_shape": min_shape}


def dataset_dims(spec: Mapping[str, Any]) -> int:
    """Spatial dimensionality of a dataset entry (synthetic spheres and ``variant: 3d`` are 3D)."""
    if spec["source"] == "synthetic_spheres":
        return 3
    if spec["source"] == "synthetic_texture":
        return 2
    return 3 if spec.get("variant", "2d") == "3d" else 2


def check_patch_sizes(config: Mapping[str, Any]) -> None:
    """Each context patch size must fit the synthetic volumes and suit each architecture (real
    volumes are checked when prepared: :func:`context_min_shape`)."""
    from segrobust.spec.input_sizes import check_input_size

    study = config["studies"]["context"]
    for i, patch in enumerate(study["patch_sizes"]):
        for name in study["datasets"]:
            spec = config["datasets"][name]
            if spec["source"] == "synthetic_spheres" and patch > spec["volume_size"]:
                raise ConfigError(
                    f"config key studies.context.patch_sizes[{i}]: patch size {patch} is larger "
                    f"than the volumes of dataset {name!r} (datasets.{name}.volume_size = "
                    f"{spec['volume_size']}); allowed: patch sizes <= {spec['volume_size']}"
                )
        for arch in study["archs"]:
            problem = check_input_size(arch, 3, patch, **config["models"].get(arch, {}))
            if problem:
                raise ConfigError(
                    f"config key studies.context.patch_sizes[{i}]: patch size {patch} cannot be "
                    f"used with architecture {arch!r}: {problem}"
                )


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, recursively (lists keep their order).

    Snakemake's params rerun trigger compares the repr of each param, and a dict's repr follows
    its insertion order: without this, reordering the keys of a config file would re-run every
    job although no value changed.
    """
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m segrobust.spec.config FILE...``: check config files before a run (those
    given with ``--configfile`` are parsed by Snakemake before any check of ours can run)."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m segrobust.spec.config CONFIG_FILE...", file=sys.stderr)
        return 2
    try:
        for path in paths:
            read_config_file(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{len(paths)} config file(s) read without error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
