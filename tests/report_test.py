"""govsnap report: the evidence report, as JSON held to docs/schemas/report.v1.json and as one
self-contained HTML page that a real headless Chromium opens from a file:// URL without
console errors or network requests; text an attacker wrote (a payload message, a note, a
forged audit entry) stays text."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from govsnap import notes
from govsnap.repo import open_repo
from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, git, run_ok, write_files
from tests.helpers.schemas import validate
from tests.helpers.tamper import policy_text

SCRIPT = "<script>document.title='owned'</script>"
IMG = '<img src="http://198.51.100.7/x.png" onerror="alert(1)">'
CHROMIUM = shutil.which("chromium")


@dataclass(frozen=True)
class Story:
    """A repository with two environments, a failing verification, a rehearsal, a
    rollback and an attacker's text in a payload, a note and a forged audit entry."""

    repo: Path
    first: str  # production, rehearsed, rolled back to
    second: str  # production, its note carries an attacker's HTML
    unsigned: str  # staging, fails verification
    forged: str  # the forged audit entry's commit


def forge_audit_entry(repo: Path, summary: str) -> str:
    """Append an unsigned entry to the audit chain with stock git, as anyone with write
    access to the ref can; return its commit."""
    head = git(repo, "rev-parse", "refs/govsnap/audit").strip()
    when = int(git(repo, "log", "-1", "--format=%ct", head).strip()) + 1
    body = {"operation": "verify", "time": when, "result": "pass", "snapshots": []}
    message = f"verify: {summary}\n\n{json.dumps(body)}\n"
    env = {**os.environ, "GIT_COMMITTER_DATE": f"@{when}", "GIT_AUTHOR_DATE": f"@{when}"}
    import subprocess

    commit = subprocess.run(
        [
            "git",
            "commit-tree",
            "-p",
            head,
            "-m",
            message,
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    git(repo, "update-ref", "refs/govsnap/audit", commit, head)
    return commit


@pytest.fixture
def story(make_repo: MakeRepo, keys: Keys, cli: Cli) -> Story:
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    repo = make_repo({"README.md": "hello\n", "app.py": "v1\n", ".govsnap/trust.toml": policy})
    first = create_snapshot(cli, repo, "-e", "production", "-l", "release-1", "-m", SCRIPT)
    write_files(repo, {"app.py": "v2\n"})
    second = create_snapshot(cli, repo, "-e", "production", "-l", "release-2")
    unsigned = create_snapshot(cli, repo, "-e", "staging", "--unsigned")
    assert cli(repo, "verify", "--all").code == 1  # the unsigned one fails
    run_ok(cli, repo, "rehearse", first)
    run_ok(cli, repo, "rollback", first, "--yes")
    r = open_repo(repo)
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{second}").strip()
    notes.merge_fields(r, tag, {"host": IMG}, r.committer())
    forged = forge_audit_entry(repo, SCRIPT)
    git(repo, "config", "govsnap.keepLast", "1")
    return Story(repo, first, second, unsigned, forged)


def by_id(report: dict[str, object]) -> dict[str, dict[str, object]]:
    envs = report["environments"]
    assert isinstance(envs, list)
    return {s["id"]: s for e in envs for s in e["snapshots"]}


def test_report_holds_the_evidence_and_escapes_what_an_attacker_wrote(
    story: Story, cli: Cli, tmp_path: Path
) -> None:
    report = json.loads(run_ok(cli, story.repo, "report", "--json"))
    validate(report)
    assert [e["name"] for e in report["environments"]] == ["production", "staging"]
    snaps = by_id(report)

    # Verified now, not copied from the note: the unsigned snapshot fails, and why.
    staging = snaps[story.unsigned]
    assert staging["verification_now"]["verdict"] == "fail"
    assert any("unsigned" in f for f in staging["verification_now"]["failures"])
    first = snaps[story.first]
    assert first["verification_now"]["verdict"] == "pass"
    assert first["verification_now"]["signer_name"] == "releaser"
    assert first["trigger"] == "manual"
    # The history comes from signed audit entries: verify --all failed only the unsigned.
    assert [v["verdict"] for v in staging["verifications"]] == ["fail"]
    assert [(v["verdict"], v["signature"]) for v in first["verifications"]] == [("pass", "good")]
    (rehearsal,) = first["rehearsals"]
    assert rehearsal["verdict"] == "pass" and rehearsal["signature"] == "good"
    assert rehearsal["rollback_seconds"] > 0 and rehearsal["rto_seconds"] == 300

    (rollback,) = report["rollbacks"]
    assert rollback["target"] == story.first and rollback["result"] == "ok"
    safety = rollback["safety_snapshot"]
    assert snaps[safety]["safety"] is True and snaps[safety]["trigger"] == "pre-rollback"

    entries = {e["commit"]: e for e in report["audit"]["entries"]}
    assert entries[story.forged]["signature"] == "unsigned"
    assert report["audit"]["entries_total"] == len(entries)
    assert sum(e["signature"] == "good" for e in entries.values()) == len(entries) - 1

    assert report["trust"]["version"] == 1 and len(report["trust"]["history"]) == 1
    assert report["trust"]["signers"][0]["name"] == "releaser"
    assert report["trust"]["anchor_pinned"] is False  # nothing pinned: said on the page too
    # keepLast 1 per environment: the older production snapshot goes next (the safety
    # snapshot has its own group and policy).
    removed = {d["id"] for d in report["retention"]["remove"]}
    assert story.first in removed and story.second not in removed

    # The scope options narrow snapshots and rollbacks alike.
    staging_only = json.loads(run_ok(cli, story.repo, "report", "--json", "-e", "staging"))
    assert [e["name"] for e in staging_only["environments"]] == ["staging"]
    assert staging_only["rollbacks"] == []
    later = json.loads(run_ok(cli, story.repo, "report", "--json", "--since", "@4102444800"))
    assert later["environments"] == [] and later["audit"]["entries"] == []
    validate(later)

    # The page shows what an attacker wrote as text.
    out = tmp_path / "report.html"
    printed = run_ok(cli, story.repo, "report", "--html", str(out))
    assert str(out) in printed and "1 failing verification" in printed
    page = out.read_text()
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;" in page
    assert "&lt;img src=&quot;http://198.51.100.7/x.png&quot;" in page
    # Nothing in the page may load anything, whatever a later bug lets through.
    assert "default-src 'none'" in page
    assert 'data-anchor="unpinned"' in page
    assert "http://" not in page.replace("http://198.51.100.7", "").replace(
        "http://www.w3.org/2000/svg", ""
    )


def test_report_bad_input_is_one_line(make_repo: MakeRepo, cli: Cli, tmp_path: Path) -> None:
    repo = make_repo()
    for args, code, words in (
        (("--since", "last tuesday"), 2, "cannot read the time"),
        (("--html", str(tmp_path / "missing" / "r.html")), 2, "is not a directory"),
        (("--html", str(tmp_path)), 2, "it is a directory"),
    ):
        result = cli(repo, "report", *args)
        assert result.code == code, (args, result.err)
        assert len(result.err.strip().splitlines()) == 1 and words in result.err
        assert "Traceback" not in result.err
    assert not (tmp_path / "missing").exists()
    outside = cli(tmp_path, "report", "--json")
    assert outside.code == 3 and len(outside.err.strip().splitlines()) == 1


def test_report_of_a_repository_without_snapshots(make_repo: MakeRepo, cli: Cli) -> None:
    repo = make_repo()
    report = json.loads(run_ok(cli, repo, "report", "--json"))
    validate(report)
    assert report["environments"] == [] and report["trust"]["present"] is False
    assert "no trust policy" in report["trust"]["source"]
    assert "snapshot(s)" in run_ok(cli, repo, "report")


def test_a_snapshot_ref_of_any_name_is_reported_as_its_name(make_repo: MakeRepo, cli: Cli) -> None:
    """Anyone who can write refs can file a tag under a name that is no snapshot id: the
    report shows that name (and the JSON stays valid against report.v1.json)."""
    repo = make_repo()
    ident = create_snapshot(cli, repo, "--unsigned")
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()
    git(repo, "update-ref", "refs/govsnap/snapshots/not-an-id", tag)
    report = json.loads(run_ok(cli, repo, "report", "--json"))
    validate(report)
    assert set(by_id(report)) == {ident, "not-an-id"}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_report_offline(story: Story, cli: Cli, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    run_ok(cli, story.repo, "report", "--html", str(out))
    console: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri())
            page.wait_for_load_state("load")
            failing = page.locator(
                f'tr[data-snapshot="{story.unsigned}"] td.now [data-verdict="fail"]'
            )
            assert failing.is_visible()
            assert "FAIL" in failing.inner_text()
            forged = page.locator(f'tr[data-audit="{story.forged}"] [data-signature="unsigned"]')
            assert forged.is_visible()
            assert page.locator("section.environment svg circle").count() >= 1
            assert page.title() == "govsnap evidence report"  # the payload's script never ran
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert [m for m in console if m.startswith(("error", "pageerror"))] == []
    assert requests == [out.as_uri()]


def test_a_policy_that_does_not_load_is_reported_not_fatal(
    make_repo: MakeRepo, keys: Keys, cli: Cli, tmp_path: Path
) -> None:
    """An auditor still gets the page when the policy is broken: every snapshot marked not
    verified, the policy's error shown, nothing passed off as verified."""
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    repo = make_repo({"README.md": "hello\n", ".govsnap/trust.toml": policy})
    ident = create_snapshot(cli, repo, "-e", "production")
    write_files(repo, {".govsnap/trust.toml": "version = 2\n[signers.x]\nopenpgp = 'nope'\n"})
    git(repo, "commit", "-qam", "a broken policy")
    report = json.loads(run_ok(cli, repo, "report", "--json"))
    validate(report)
    assert report["trust"]["error"] and report["trust"]["present"] is False
    (snap,) = report["environments"][0]["snapshots"]
    assert snap["id"] == ident and snap["verification_now"] is None
    assert "not verified: the trust policy does not load" in snap["unchecked"]
    out = tmp_path / "r.html"
    run_ok(cli, repo, "report", "--html", str(out))
    page = out.read_text()
    assert "The trust policy does not hold" in page and "NOT CHECKED" in page
