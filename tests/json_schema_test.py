"""The JSON documents govsnap prints and stores follow docs/schemas/ (every --json output
of the suite is checked where it is produced: tests/helpers/schemas.py); here the schemas
themselves, errors under --json, and the stored formats: notes and audit entries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from govsnap.errors import EXIT_CHECK_FAILED, EXIT_ENVIRONMENT, EXIT_USAGE
from tests.helpers import Cli, all_refs, create_snapshot, git, run_ok, write_files
from tests.helpers.schemas import SCHEMAS, validate

DOCS = Path(__file__).resolve().parents[1] / "docs"
STORED = {"snapshot", "note", "audit-entry"}  # parts of documents, or formats kept in git


def test_every_schema_is_a_valid_draft_2020_12_schema_named_for_its_kind() -> None:
    files = sorted(SCHEMAS.glob("*.json"))
    assert len(files) > 20
    cli_doc = (DOCS / "cli.md").read_text()
    for path in files:
        kind, version = re.fullmatch(r"([a-z-]+)\.(v\d+)\.json", path.name).groups()  # type: ignore[union-attr]
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        if kind not in STORED:
            assert schema["properties"]["schema"] == {"const": f"govsnap/{kind}/{version}"}
            assert "schema" in schema["required"]
        assert f"`{kind}`" in cli_doc, f"docs/cli.md does not list the {kind} schema"


def error_document(err: str) -> dict[str, object]:
    """Return the error document of a failed --json command: stderr's only line."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("args", "code", "kind", "needle"),
    [
        (["show", "ffff", "--json"], EXIT_USAGE, "usage", "no snapshot matches"),
        (["list", "--json", "--bogus"], EXIT_USAGE, "usage", "No such option"),
        (["verify", "--json"], EXIT_USAGE, "usage", "name the snapshots"),
    ],
)
def test_errors_under_json_are_one_document_on_stderr(
    cli: Cli, repo: Path, args: list[str], code: int, kind: str, needle: str
) -> None:
    create_snapshot(cli, repo)
    before = all_refs(repo)
    result = cli(repo, *args)
    assert result.code == code and result.out == ""
    error = error_document(result.err)
    assert error["schema"] == "govsnap/error/v1"
    assert (error["exit_code"], error["kind"]) == (code, kind)
    assert needle in str(error["message"])
    assert all_refs(repo) == before


def test_outside_a_repository_the_error_is_json_too(cli: Cli, tmp_path: Path) -> None:
    result = cli(tmp_path, "list", "--json")
    error = error_document(result.err)
    assert result.code == error["exit_code"] == EXIT_ENVIRONMENT
    assert error["kind"] == "environment"


def test_a_failed_check_prints_its_report_and_then_its_error(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    git(repo, "notes", "--ref=govsnap", "add", "-f", "-m", json.dumps({"tree": "0" * 40}),
        f"refs/govsnap/snapshots/{ident}")
    result = cli(repo, "verify", ident, "--json")
    # The tampered note fails the note check: the report comes first, then the error.
    assert result.code == EXIT_CHECK_FAILED
    report = json.loads(result.out)
    assert report["schema"] == "govsnap/verify/v1" and report["verdict"] == "fail"
    error = error_document(result.err)
    assert (error["exit_code"], error["kind"]) == (EXIT_CHECK_FAILED, "check-failed")


def test_without_json_errors_stay_one_line_for_people(cli: Cli, repo: Path) -> None:
    result = cli(repo, "show", "ffff")
    assert result.code == EXIT_USAGE
    assert result.err.startswith("govsnap: error: no snapshot matches")
    # A `--json` after `--` is an argument, not the option.
    result = cli(repo, "rollback", "--yes", "ffff", "--", "--json")
    assert result.err.startswith("govsnap: error: ")


def test_the_notes_and_audit_entries_govsnap_writes_follow_their_schemas(
    cli: Cli, repo: Path
) -> None:
    git(repo, "config", "govsnap.requireTrust", "false")
    first = create_snapshot(cli, repo, "-l", "release", "-m", "first")
    write_files(repo, {"src/app.py": "print('v2')\n"})
    create_snapshot(cli, repo, "--unsigned", "-e", "staging")
    run_ok(cli, repo, "pin", first)
    run_ok(cli, repo, "verify", first)
    run_ok(cli, repo, "rollback", first, "--yes")
    run_ok(cli, repo, "prune", "--keep-last", "1", "-e", "staging", "--yes", "--no-gc")

    listing = git(repo, "notes", "--ref=govsnap", "list").split()
    notes = [git(repo, "cat-file", "blob", blob) for blob in listing[0::2]]
    assert len(notes) >= 3
    for text in notes:
        validate(json.loads(text), "note.v1.json")
    messages = git(repo, "log", "--format=%B%x00", "refs/govsnap/audit").split("\0")
    bodies = [m.strip().partition("\n\n")[2] for m in messages if m.strip()]
    assert len(bodies) >= 6
    for body in bodies:
        validate(json.loads(body), "audit-entry.v1.json")
