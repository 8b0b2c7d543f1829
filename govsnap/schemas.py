"""The documents `--json` prints: each names the JSON Schema it follows, as
`"schema": "govsnap/<kind>/v1"` (docs/schemas/<kind>.v1.json; the promise that goes with
the name is in docs/cli.md, "JSON output")."""

from __future__ import annotations

from typing import Any

# The version of every document this govsnap prints. It changes only when a document
# loses or renames a member, or a member changes type or meaning (docs/cli.md).
VERSION = 1


def schema_name(kind: str) -> str:
    """Return the name a document of `kind` carries: govsnap/<kind>/v1."""
    return f"govsnap/{kind}/v{VERSION}"


def document(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Return `data` as a document of `kind`: its schema's name first, then its members."""
    return {"schema": schema_name(kind), **data}
