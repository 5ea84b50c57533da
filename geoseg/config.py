"""Loading of geoseg's YAML files (catalog, workflow) into closed, typed pydantic models.

Both files share one policy: unknown keys are errors naming the key path and the file, every
validation error says what is allowed, and nothing here opens any data. Paths in both files are
expanded the same way (:func:`expand_path`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from geoseg.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)

#: The environment variable naming the shared data folder.
DATA_ENV = "GEOSEG_DATA"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def canonical_sha256(data: Any) -> str:
    """SHA-256 of JSON data in canonical form (sorted keys, no whitespace).

    Re-indenting or re-ordering a file does not change it; changing any value does.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def default_data_dir(base: Path) -> Path:
    """The shared data folder: ``$GEOSEG_DATA``, else ``../shared/data`` beside ``base``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser().resolve() if env else (base.parent / "shared" / "data").resolve()


def expand_vars(
    text: str,
    base: Path,
    data_dir: Path | None = None,
    error: type[ConfigError] = ConfigError,
) -> str:
    """Expand ``${VAR}`` (or ``$VAR``) in a path or URL.

    ``${GEOSEG_DATA}`` has a default, ``data_dir`` (else :func:`default_data_dir` of ``base``);
    any other variable must be set, or ``error`` names it.
    """

    def substitute(match: re.Match[str]) -> str:
        var = match.group(1) or match.group(2)
        if var == DATA_ENV:
            return str(data_dir or default_data_dir(base))
        if var not in os.environ:
            raise error(f"path '{text}' uses ${{{var}}} but the variable is not set")
        return os.environ[var]

    return _VAR.sub(substitute, text)


def expand_path(
    text: str,
    base: Path,
    data_dir: Path | None = None,
    error: type[ConfigError] = ConfigError,
) -> Path:
    """Expand variables (:func:`expand_vars`) and ``~``; resolve relative to the folder ``base``.

    URLs are no paths: callers that accept them (catalog sources) test for them first.
    """
    path = Path(expand_vars(text, base, data_dir, error)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


class ClosedModel(BaseModel):
    """Base of every config model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML's safe loader, refusing a key given twice in one mapping.

    YAML says keys are unique; PyYAML silently keeps the last one.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor": merged keys may repeat
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # PyYAML itself refuses it, saying where
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' is given twice (lines {seen[key]} and {line}); "
                    "keep one: YAML keys are unique",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path, what: str, error: type[ConfigError] = ConfigError) -> Any:
    """Parse a YAML file (UTF-8, unique keys), with errors that name the file and the line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise error(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(
            f"{what} {path} is not UTF-8 text (byte {raw[exc.start]:#04x} at line {line}): "
            "save it as UTF-8"
        ) from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{what} {path} is not valid YAML{where}: {problem}") from exc


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    """Parse a YAML mapping (:func:`load_yaml`): a workflow or catalog file."""
    data = load_yaml(path, what)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} {path} must be a YAML mapping (key: value), got {type(data).__name__}"
        )
    return data


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, list, dict, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed next to the key at ``loc`` (best effort through nested models)."""
    candidates = [model]
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue
        nested: list[type[BaseModel]] = []
        for candidate in candidates:
            field = candidate.model_fields.get(part)
            if field is not None:
                nested.extend(_models_in(field.annotation))
        if nested:
            candidates = nested
    keys: list[str] = []
    for candidate in candidates:
        keys.extend(k for k in candidate.model_fields if k not in keys)
    return keys


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], path: Path, what: str, at: str = ""
) -> str:
    """Turn a pydantic error into lines naming the key path, the file and what is allowed.

    ``at`` is where ``model`` sits in the file (``steps.0.predict``), prefixed to key paths.
    """
    lines = [f"{what} {path} is invalid:"]
    for err in exc.errors():
        key = ".".join(p for p in (at, ".".join(str(part) for part in err["loc"])) if p)
        key = key or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model, tuple(err["loc"])))
            lines.append(f"  - unknown key '{key}'; allowed here: {allowed}")
        else:
            lines.append(f"  - {key}: {err['msg']}")
    return "\n".join(lines)


def parse_model(model: type[ModelT], data: Any, path: Path, what: str, at: str = "") -> ModelT:
    """Validate ``data`` against ``model``, raising :class:`ConfigError` with readable lines.

    ``at`` is the key path of ``data`` inside the file, for the messages.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, path, what, at)) from exc
