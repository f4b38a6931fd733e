"""Config validation at parse time: the JSON schema, with messages a user can act on.

Snakemake's own ``snakemake.utils.validate`` fills the schema's defaults into the config; before
it, :func:`check_against_schema` reports the first violation as the key path, the bad value and
what the schema allows, instead of jsonschema's raw dump. :func:`check_consistency` then checks what
one schema rule cannot express (references between keys, split fractions summing to one).

Nothing here imports torch or MONAI: the Snakefile is parsed by every cluster job, so parse-time
checks must stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the key and the allowed values."""


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
    - every context patch size fits the study's volumes and suits each architecture.
    """
    split = config["split"]
    total = split["train"] + split["validation"] + split["test"]
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ConfigError(
            f"config key split: train + validation + test must sum to 1, got {total:g} "
            f"({split['train']:g} + {split['validation']:g} + {split['test']:g})"
        )
    datasets = config["datasets"]
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


def dataset_dims(spec: Mapping[str, Any]) -> int:
    """Spatial dimensionality of a dataset entry (synthetic spheres and ``variant: 3d`` are 3D)."""
    if spec["source"] == "synthetic_spheres":
        return 3
    if spec["source"] == "synthetic_texture":
        return 2
    return 3 if spec.get("variant", "2d") == "3d" else 2


def check_patch_sizes(config: Mapping[str, Any]) -> None:
    """Each context patch size must fit the synthetic volumes and suit each architecture."""
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
