"""Every `--json` document a test sees is checked against its schema in docs/schemas/:
the CLI fixture, the torture harness and the tests that run the installed command call
check_json_output with what a command printed. Schemas are checked closed (no member
the schema does not name), so a member added to the output without its schema fails."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def _closed(schema: Any) -> Any:
    """Return `schema` with every object that names its properties closed to others
    (unless it says itself whether others are allowed)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        closed["additionalProperties"] = False
    return closed


@cache
def _registry() -> Registry[Any]:
    """Every schema file, closed, under its file name (as `$ref`s name them)."""
    resources = [
        (path.name, Resource.from_contents(_closed(json.loads(path.read_text())), DRAFT202012))
        for path in sorted(SCHEMAS.glob("*.json"))
    ]
    return Registry().with_resources(resources)


def schema_file(name: str) -> str:
    """Return the file of the schema a document names (govsnap/<kind>/v1)."""
    parts = name.split("/")
    assert len(parts) == 3 and parts[0] == "govsnap" and parts[2].startswith("v"), name
    path = SCHEMAS / f"{parts[1]}.{parts[2]}.json"
    assert path.exists(), f"no schema {path.name} for documents named {name!r}"
    return path.name


def validate(data: Any, file: str | None = None) -> None:
    """Fail unless `data` is valid against its schema (`file`, else the one it names)."""
    if file is None:
        assert isinstance(data, dict) and "schema" in data, f"no schema member: {data!r:.200}"
        file = schema_file(data["schema"])
    schema = _registry().contents(file)
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, f"{file}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message:.300}" for e in errors[:5]
    )


def wants_json(args: tuple[str, ...] | list[str]) -> bool:
    """Return True when a command line asks for --json (before any `--`)."""
    args = list(args)
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def check_json_output(args: tuple[str, ...] | list[str], code: int, out: str, err: str) -> None:
    """With --json: stdout, when the command printed anything there, is one document valid
    against its schema (it must have when it succeeded); a failure's last stderr line is
    an error document carrying the exit code."""
    if not wants_json(args) or "--help" in args:
        return
    if out.strip() or code == 0:
        validate(json.loads(out))
    if code != 0:
        lines = err.strip().splitlines()
        assert lines, f"exit {code} with --json and nothing on stderr"
        error = json.loads(lines[-1])
        validate(error)
        assert error["exit_code"] == code, (error, code)
