"""Long operations report how far they are (govsnap/progress.py) to whoever listens: each
names what it does and counts what it can; nested tasks take over and give back; worker
processes report through their parent; nothing is reported to nobody."""

from __future__ import annotations

from pathlib import Path

from govsnap import doctor, progress, render, verify
from govsnap.prune import PruneOptions, execute, plan
from govsnap.repo import open_repo
from govsnap.retention import RetentionPolicy
from tests.helpers import Cli, create_snapshot, write_files


class Recorder:
    """Keeps every report, as (event, what, done, total)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, int | None]] = []
        self.depth = 0
        self.deepest = 0

    def start(self, what: str, total: int | None) -> None:
        self.depth += 1
        self.deepest = max(self.deepest, self.depth)
        self.events.append(("start", what, 0, total))

    def update(self, what: str, done: int, total: int | None) -> None:
        self.events.append(("update", what, done, total))

    def stop(self) -> None:
        self.depth -= 1
        self.events.append(("stop", "", 0, None))

    def said(self) -> list[str]:
        return [what for _, what, _, _ in self.events if what]


def test_tasks_nest_and_end_even_when_they_fail() -> None:
    heard = Recorder()
    with progress.listening(heard), progress.task("outer", total=2) as outer:
        outer.advance()
        try:
            with progress.task("inner"):
                raise ValueError("boom")
        except ValueError:
            pass
        outer.phase("second half", total=1)
        outer.doing("still the second half")
    assert heard.events == [
        ("start", "outer", 0, 2),
        ("update", "outer", 1, 2),
        ("start", "inner", 0, None),
        ("stop", "", 0, None),
        ("update", "second half", 0, 1),
        ("update", "still the second half", 0, 1),
        ("stop", "", 0, None),
    ]
    assert heard.depth == 0
    # Nobody listening: a task is reported to nobody, and costs nothing else.
    with progress.task("unheard", total=1) as alone:
        alone.advance()
    assert len(heard.events) == 7


def test_create_verify_prune_and_doctor_say_what_they_do(cli: Cli, repo: Path) -> None:
    write_files(repo, {f"dir/f{i:03}.txt": f"{i}\n" for i in range(40)})
    ids = [create_snapshot(cli, repo, "-l", f"n{i}") for i in range(3)]
    opened = open_repo(repo)
    heard = Recorder()
    with progress.listening(heard):
        from govsnap.store import CreateOptions, create

        create(opened, CreateOptions(unsigned=True))
        report = verify.run(opened, [], all_=True, jobs=1)
        doctor.run(opened)
        execute(opened, plan(opened, PruneOptions(policy=RetentionPolicy(last=1))))
    said = heard.said()
    assert "capturing the working tree (git add -A)" in said
    assert "hashing the captured files (SHA-256)" in said
    total = len(report.results)
    assert total == len(ids) + 1
    assert ("update", f"verifying {total} snapshot(s)", total, total) in heard.events
    assert [w for w in said if w.startswith("doctor: checking")][-1] == "doctor: checking notes"
    assert any(e[0] == "update" and e[2] == 6 and e[3] == 6 for e in heard.events)
    assert "prune: removing 3 snapshot(s)" in said and "reclaiming space (git gc)" in said
    assert heard.depth == 0


def test_verify_in_worker_processes_counts_each_share(cli: Cli, repo: Path) -> None:
    for i in range(2 * verify._MIN_PER_JOB):
        write_files(repo, {"n.txt": f"{i}\n"})
        create_snapshot(cli, repo, "--unsigned")
    heard = Recorder()
    with progress.listening(heard):
        report = verify.run(open_repo(repo), [], all_=True, jobs=2)
    total = len(report.results)
    counts = [done for event, what, done, _ in heard.events if event == "update"]
    assert counts[-1] == total and len(counts) == 2  # one report per worker's share


def test_progress_is_only_for_people_on_a_terminal() -> None:
    render.reset()
    assert not render.shows_progress(json_out=True)
    render.settings.quiet = True
    assert not render.shows_progress(json_out=False)
    render.reset()
