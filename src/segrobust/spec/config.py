"""Config validation at parse time: the JSON schema, with messages a user can act on.

:func:`validate_config` is what the Snakefile runs, in this order: :func:`check_values` walks the
config without recursion and refuses what the schema cannot see (keys that are not text, nesting
deeper than ``MAX_DEPTH``, NaN or infinite numbers: a JSON schema ``maximum`` is no bound for
NaN, which compares false with everything); :func:`check_against_schema` reports the first
schema violation as the key path, the bad value and what the schema allows, instead of
jsonschema's raw dump; Snakemake's own ``snakemake.utils.validate`` fills the schema's defaults
in; :func:`check_consistency` then checks what one schema rule cannot express (references
between keys, split fractions summing to one, keys a source requires, names that would be one
folder).

Before any of that, :func:`check_config_files` (called at the top of the Snakefile) reads the
workflow's own config file the way Snakemake is about to, and names the file and the line of an
empty file or a YAML syntax error, which Snakemake reports as "Config file is not valid JSON or
YAML" without either. Files given with ``--configfile`` are parsed by Snakemake's command line
before the Snakefile runs (``ConfigSettings`` in snakemake/settings/types.py), so a broken one
never reaches this check; ``python -m segrobust.spec.config FILE...`` reads them the same way and
validates their merged config as the Snakefile does.

Nothing here imports torch or MONAI: the Snakefile is parsed by every cluster job, so parse-time
checks must stay cheap.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from segrobust.data.sources import SOURCES
from segrobust.spec.architectures import get_architecture
from segrobust.spec.input_sizes import check_input_size
from segrobust.spec.runs import spatial_dims


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the key and the allowed values."""


#: Deepest nesting of mappings and lists a config may have. The schema's deepest value is five
#: levels down (``studies.perturbation.options.speckle.scaling``); anything far deeper is a
#: mistake, and recursive code (YAML's parser, jsonschema) would exhaust Python's stack on it.
MAX_DEPTH = 32

#: The workflow's schema, beside the package in this repository (``src/segrobust/spec/``).
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


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
    except RecursionError:
        raise ConfigError(
            f"config file {path}: nested too deeply to read; a config is at most {MAX_DEPTH} "
            "levels of keys and lists deep"
        ) from None
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


#: A key shown as is in a key path; any other is shown quoted (``datasets['../x'].seed``).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(parts: Iterable[Any]) -> str:
    """``['studies', 'texture', 'alphas', 2]`` -> ``studies.texture.alphas[2]``; a key with other
    characters than letters, digits, ``_`` and ``-`` is quoted: ``datasets['a/b'].seed``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(str(part)):
            out += f"[{str(part)!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def check_values(config: Mapping[str, Any]) -> None:
    """Refuse what no schema rule catches, naming the key: a key that is not text, nesting
    deeper than ``MAX_DEPTH``, a NaN or infinite number (YAML ``.nan`` / ``.inf``, JSON ``NaN``).

    Iterative (an explicit stack), so a config nested thousands of levels deep gives this one
    error instead of a recursion traceback.

    Raises:
        ConfigError: naming the key path and what is allowed.
    """
    stack: list[tuple[tuple[Any, ...], Any]] = [((), config)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            shown = key_path(path[:6]) + " ... " + key_path(path[-2:])
            raise ConfigError(
                f"config key {shown}: nested more than {MAX_DEPTH} levels deep; allowed: at most "
                f"{MAX_DEPTH} levels of keys and lists (a segrobust config needs 5)"
            )
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ConfigError(
                        f"config key {key_path(path)}: key {key!r} ({type(key).__name__}) is not "
                        "allowed; allowed: keys that are text (quote it)"
                    )
                stack.append(((*path, key), item))
        elif isinstance(value, (list, tuple)):
            stack.extend(((*path, i), item) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                f"config key {key_path(path)}: {value!r} is not allowed; allowed: a finite number "
                "(NaN and infinity are never valid settings)"
            )


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
    if kw == "pattern":
        return f"text matching {schema['pattern']}"
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
    if "propertyNames" in error.absolute_schema_path:
        rule = error.schema.get("description", "").strip() or _allowed(error)
        raise ConfigError(
            f"config key {where}: the name {error.instance!r} is not allowed; allowed: {rule}"
        )
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


@functools.lru_cache(maxsize=4)
def _parsed_schema(path: str, stamp: int) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on the schema
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)


def load_schema(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed config schema (cached while the file is unchanged; a fresh copy each call)."""
    return copy.deepcopy(_parsed_schema(str(path), Path(path).stat().st_mtime_ns))


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Everything the Snakefile checks at parse time, in order (see the module docstring), and
    the schema's defaults filled into ``config`` (Snakemake's ``validate``). The Snakefile calls
    the same steps itself, so that Snakemake's ``validate`` sees the workflow (its module
    ``skip_validation`` and source cache).

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    from snakemake.utils import validate  # parse time has Snakemake loaded; library users pay here

    check_values(config)
    check_against_schema(config, load_schema(schema_path))
    validate(config, str(schema_path))
    check_consistency(config)


def check_split_sum(split: Mapping[str, float], key: str) -> None:
    """The fractions ``train + validation + test`` of ``split`` (config key ``key``) sum to 1."""
    total = split["train"] + split["validation"] + split["test"]
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ConfigError(
            f"config key {key}: train + validation + test must sum to 1, got {total:g} "
            f"({split['train']:g} + {split['validation']:g} + {split['test']:g})"
        )


def check_folder_names(config: Mapping[str, Any]) -> None:
    """Names that become folders stay distinct on every file system: dataset names that differ
    only in case would be one folder on macOS or Windows, and texture alphas that print alike
    (``contract.format_alpha``) would name one dataset."""
    from segrobust.contract import format_alpha

    seen: dict[str, str] = {}
    for name in config["datasets"]:
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise ConfigError(
                f"config key datasets: the names {other!r} and {name!r} differ only in case; on "
                "a case-insensitive file system (macOS, Windows) they are one folder; allowed: "
                "names that differ in more than case"
            )
    printed: dict[str, float] = {}
    for i, alpha in enumerate(config["studies"]["texture"]["alphas"]):
        other = printed.setdefault(format_alpha(alpha), alpha)
        if other != alpha:
            raise ConfigError(
                f"config key studies.texture.alphas[{i}]: {alpha!r} and {other!r} both name the "
                f"dataset texture-<direction>-{format_alpha(alpha)}; allowed: alphas that differ "
                "in their shortest printed form"
            )


def check_consistency(config: Mapping[str, Any]) -> None:
    """Cross-key checks on a config whose defaults are filled in.

    - split fractions sum to 1, the top-level ones and each dataset's own;
    - names that become folders are distinct (:func:`check_folder_names`);
    - every study's patch sampler can draw a patch (``pos_neg_ratio`` not both 0);
    - every dataset a study names is defined under ``datasets`` with a source of the right
      dimensionality (2D for the perturbation study, 3D for the context study);
    - every architecture of a study is built in the study's dimensionality;
    - every context patch size fits the study's volumes and suits each architecture;
    - every texture shape (radius and irregularity, or their ranges) fits its image size.
    """
    check_split_sum(config["split"], "split")
    datasets = config["datasets"]
    for name, entry in datasets.items():
        if "split" in entry:
            check_split_sum(entry["split"], f"datasets.{name}.split")
    check_folder_names(config)
    for study, settings in config["studies"].items():
        ratio = settings["train"]["pos_neg_ratio"]
        if sum(ratio) <= 0:
            raise ConfigError(
                f"config key studies.{study}.train.pos_neg_ratio: {ratio} draws no patch; "
                "allowed: two weights >= 0, not both 0"
            )
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
    check_architecture_dims(studies)
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


def check_architecture_dims(studies: Mapping[str, Any]) -> None:
    """Every architecture of an enabled study supports the study's spatial dims (its record's
    ``spatial_dims``: the context study is 3D, the others 2D)."""
    for study, settings in studies.items():
        if not settings["enabled"]:
            continue
        dims = spatial_dims(study)
        for i, arch in enumerate(settings["archs"]):
            supported = get_architecture(arch).spatial_dims
            if dims not in supported:
                allowed = ", ".join(f"{d}D" for d in supported)
                raise ConfigError(
                    f"config key studies.{study}.archs[{i}]: architecture {arch!r} is not built "
                    f"in {dims}D, which the {study} study needs; it supports: {allowed}"
                )


def check_source_keys(datasets: Mapping[str, Any]) -> None:
    """Every dataset entry of a source the pipeline does not download (a user's directory,
    ``msd_import``) has its ``path``."""
    for name, spec in datasets.items():
        source = spec.get("source")
        if source not in SOURCES or SOURCES.get(source).downloadable:
            continue
        value = spec.get("path")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"config key datasets.{name}.path: missing or empty; source {source} needs it: "
                f"the directory holding imagesTr/, labelsTr/ and dataset.json"
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


def dataset_entry(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Dataset ``name``'s config entry as its preparation reads it: the top-level ``split`` and
    ``split.calibration_fraction`` unless the entry overrides them (plain values: their repr
    drives the params rerun trigger)."""
    split = dict(config["split"])
    defaults = {"calibration_fraction": split.pop("calibration_fraction"), "split": split}
    return {**defaults, **config["datasets"][name]}


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
    given with ``--configfile`` are parsed by Snakemake before any check of ours can run).

    The files are read (naming a file and line that cannot be), merged in order as Snakemake
    merges the Snakefile's ``configfile`` and each ``--configfile``, and the merged config is
    validated as the Snakefile validates it (:func:`validate_config`). Exit status 0 when it
    is valid, 1 with one line naming the file or key otherwise, 2 for a usage error.
    """
    from snakemake.utils import update_config

    parser = argparse.ArgumentParser(
        prog="python -m segrobust.spec.config",
        description="Check config files as the Snakefile would: readable YAML, then the merged "
        "config against the schema and the cross-key checks.",
    )
    parser.add_argument(
        "files", nargs="+", metavar="CONFIG_FILE", help="e.g. config/config.yaml mine.yaml"
    )
    parser.add_argument(
        "--schema", default=str(SCHEMA_PATH), help="the config schema (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    config: dict[str, Any] = {}
    try:
        for path in args.files:
            data = read_config_file(path)
            try:
                check_values(data)  # before merging: Snakemake's update_config recurses
            except ConfigError as exc:
                raise ConfigError(f"config file {path}: {exc}") from None
            update_config(config, data)
        if not Path(args.schema).is_file():
            raise ConfigError(f"schema {args.schema}: not found; give it with --schema PATH")
        validate_config(config, args.schema)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{len(args.files)} config file(s) valid: {', '.join(args.files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
