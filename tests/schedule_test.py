"""examples/schedule: the systemd units pass `systemd-analyze verify`, their timers fire
every 4 hours, daily, weekly and monthly as `systemd-analyze calendar` computes them, the
cron file runs the same commands, and those commands, run for real on a repository,
leave what docs/operations.md says a monitor sees."""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Cli, Keys, MakeRepo, git, govsnap_bin, run_ok, write_files
from tests.helpers.tamper import policy_text

SCHEDULE = Path(__file__).resolve().parent.parent / "examples" / "schedule"
JOBS = ("create", "verify", "prune", "rehearse", "stats")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is absent (apt-get install systemd)"
)
INSTALLED = "/usr/local/bin/govsnap"
TEXTFILES = "/var/lib/prometheus/node-exporter"


def unit(job: str, kind: str) -> str:
    return (SCHEDULE / f"govsnap-{job}@.{kind}").read_text()


def settings(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


@needs_systemd
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # An instance of each template (for /srv/app), calling the govsnap under test: verify
    # checks that the programs exist.
    for job in JOBS:
        for kind in ("service", "timer"):
            text = unit(job, kind).replace(INSTALLED, govsnap_bin())
            (tmp_path / f"govsnap-{job}@srv-app.{kind}").write_text(text)
    files = sorted(str(p) for p in tmp_path.iterdir())
    assert SYSTEMD_ANALYZE is not None
    checked = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *files],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    # Unknown keys are only warned about: a clean run says nothing at all.
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def elapses(spec: str, count: int = 4) -> list[datetime]:
    """Return the next times `spec` elapses, as systemd computes them."""
    assert SYSTEMD_ANALYZE is not None
    out = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", f"--iterations={count}", spec],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    ).stdout
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", out)
    assert len(found) == count, out
    return [datetime.fromisoformat(t) for t in found]


@needs_systemd
def test_timers_fire_as_the_schedule_says() -> None:
    def spec(job: str) -> str:
        [found] = settings(unit(job, "timer"), "OnCalendar")
        return found

    for job, every in (
        ("create", timedelta(hours=4)),
        ("verify", timedelta(days=1)),
        ("prune", timedelta(weeks=1)),
        ("stats", timedelta(minutes=15)),
    ):
        times = elapses(spec(job))
        assert {b - a for a, b in itertools.pairwise(times)} == {every}, job
    monthly = elapses(spec("rehearse"))
    assert {t.day for t in monthly} == {1}
    assert len({(t.year, t.month) for t in monthly}) == len(monthly)
    for job in JOBS:
        timer = unit(job, "timer")
        assert settings(timer, "Persistent") == ["true"]  # a missed run happens at boot
        assert settings(timer, "WantedBy") == ["timers.target"]


def unit_commands() -> dict[str, list[str]]:
    """Return each job's govsnap commands (ExecStart, then ExecStopPost)."""
    return {
        job: settings(unit(job, "service"), "ExecStart")
        + settings(unit(job, "service"), "ExecStopPost")
        for job in JOBS
    }


def test_the_cron_file_runs_the_same_commands() -> None:
    lines = [
        line
        for line in (SCHEDULE / "govsnap.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(lines) == len(JOBS)
    cron: set[str] = set()
    for line in lines:
        fields = line.split(None, 6)
        assert len(fields) == 7 and fields[5] == "govsnap", line  # five times, a user
        for command in fields[6].split("; "):
            cron.add(command.replace('"$REPO"', "%f").replace('"$PROM"', "PROM"))
    units = {
        command.replace(INSTALLED, "govsnap").replace(f"{TEXTFILES}/govsnap-%i.prom", "PROM")
        for commands in unit_commands().values()
        for command in commands
    }
    assert cron == units


def test_the_scheduled_commands_work_on_a_repository(
    cli: Cli, make_repo: MakeRepo, keys: Keys, tmp_path: Path
) -> None:
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": policy})
    git(repo, "config", "govsnap.environment", "production")
    git(repo, "config", "govsnap.keepLast", "1")
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()

    def run(job: str) -> None:
        for command in unit_commands()[job]:
            filled = (
                command.replace("%f", str(repo))
                .replace("%i", "srv-app")
                .replace(INSTALLED, govsnap_bin())
                .replace(TEXTFILES, str(textfiles))
            )
            done = subprocess.run(shlex.split(filled), capture_output=True, text=True)
            assert done.returncode == 0, (filled, done.stdout, done.stderr)

    run("create")
    run("create")  # unchanged: no second snapshot
    write_files(repo, {"app.py": "v2\n"})
    run("create")
    run("verify")
    run("rehearse")
    run("prune")  # keeps the newest
    run("stats")

    entries = json.loads(run_ok(cli, repo, "audit", "--json"))["entries"]
    operations = [e["operation"] for e in entries]
    assert operations == ["prune", "rehearse", "verify", "create", "create"]
    [snap] = json.loads(run_ok(cli, repo, "list", "--json"))["snapshots"]
    assert snap["payload"]["trigger"] == "schedule"
    text = (textfiles / "govsnap-srv-app.prom").read_text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    success = (("environment", "production"), ("outcome", "success"))
    for operation in ("create", "verify", "rehearse", "prune"):
        key = ("govsnap_operations_total", (success[0], ("operation", operation), success[1]))
        assert samples[key] == (2 if operation == "create" else 1), operation


def test_rehearse_environment_refuses_an_environment_without_snapshots(
    cli: Cli, make_repo: MakeRepo
) -> None:
    repo = make_repo()
    run_ok(cli, repo, "create", "-e", "staging")
    refused = cli(repo, "rehearse", "--environment", "production")
    assert refused.code == 2 and refused.out == ""
    assert refused.err == "govsnap: error: environment 'production' has no snapshots\n"
