"""python -m benchmarks: every comparison against stock git in one run, one table."""

from __future__ import annotations

import argparse
import compileall
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ROOT, Comparison, Context, load, machine, table

# Case modules, in the order of the table. Each exposes run(ctx) -> list[Comparison].
CASES = [
    "create",
    "from_commit",
    "rollback",
    "restore",
    "listing",
    "startup",
    "diff",
    "verify",
    "verify_shaped",
    "memory",
    "report",
    "prune",
    "version",
    "push",
    "policy",
    "stats",
]


def _signing_env(home: Path) -> tuple[dict[str, str], str]:
    import gnupg

    gnupg_home = Path(tempfile.mkdtemp(prefix="gsb"))
    gnupg_home.chmod(0o700)
    gpg = gnupg.GPG(gnupghome=str(gnupg_home))
    key = gpg.gen_key(
        gpg.gen_key_input(
            key_type="EDDSA",
            key_curve="ed25519",
            key_usage="sign",
            name_real="Bench",
            name_email="bench@example.com",
            expire_date=0,
            no_protection=True,
        )
    )
    # Bytecode is written as an installed package has it (pip compiles at install):
    # without it every run recompiles govsnap's modules.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GIT_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        GNUPGHOME=str(gnupg_home),
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="Bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
    )
    (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n")
    return env, str(key.fingerprint)


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases and print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--small", action="store_true", help="10,000 files / ~100 MiB, 3 runs")
    parser.add_argument("--files", type=int, help="files in the generated repository (100000)")
    parser.add_argument("--mib", type=int, help="total size in MiB (1024)")
    parser.add_argument("--runs", type=int, help="timed runs per measurement (5)")
    parser.add_argument("--only", action="append", choices=CASES, help="run only this case")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / ".work",
        help="where generated repositories are kept between runs",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    files = args.files or (10_000 if args.small else 100_000)
    mib = args.mib or (100 if args.small else 1024)
    runs = args.runs or (3 if args.small else 5)
    args.workdir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="gsbhome"))
    env, key = _signing_env(home)
    ctx = Context(files, mib * 1024 * 1024, runs, args.workdir.resolve(), env, key)
    results: list[Comparison] = []
    compileall.compile_dir(ROOT.parent / "govsnap", quiet=1)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = load()
    try:
        for name in args.only or CASES:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            module = importlib.import_module(f"benchmarks.{name}")
            rows = module.run(ctx)
            # Each case's rows as soon as it ends: a later case that fails loses nothing.
            print(table(rows), file=sys.stderr, flush=True)
            results.extend(rows)
    finally:
        subprocess.run(["gpgconf", "--homedir", env["GNUPGHOME"], "--kill", "all"], check=False)
        shutil.rmtree(env["GNUPGHOME"], ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    header = (
        f"{files:,} files, ~{mib} MiB; {runs} runs; {machine()}\n"
        f"started {started} at commit {commit or '?'}; load average {load_before} at the "
        f"start, {load()} at the end"
    )
    text = f"{header}\n\n{table(results)}\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
