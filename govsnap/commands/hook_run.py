"""`govsnap hook-run <name>`: the entry point of the hooks git runs (govsnap/hook_run.py
does their work). It reads git's input, runs the hook govsnap chains to, shows what the
hook says on stderr (git shows it to the user) and returns the exit code git acts on,
without loading the command-line framework: hooks run on every push.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from govsnap import render


def _scrub_environment() -> None:
    """Drop the GIT_* variables git sets for hooks, so git and libgit2 calls made from
    here act on the repository they are given, not the one these variables point at."""
    from govsnap.repo import scrubbed_env

    kept = scrubbed_env()
    os.environ.clear()
    os.environ.update(kept)


def run_hook(argv: Sequence[str]) -> int:
    """Run `hook-run <name> [--chain <script>] [git's hook arguments...]`; return the exit
    code git acts on. Without --chain it is run by the pre-commit framework or by hand."""
    from govsnap import hook_run

    if not argv or argv[0] not in hook_run.HOOK_NAMES:
        render.error(f"hook-run needs a hook name: one of {', '.join(hook_run.HOOK_NAMES)}")
        return 2
    name, rest = argv[0], list(argv[1:])
    script = None
    if rest[:1] == ["--chain"] and len(rest) >= 2:
        script, rest = Path(rest[1]), rest[2:]
    env = dict(os.environ)
    framework = env.get("PRE_COMMIT") == "1"
    stdin = b""
    if name != "post-merge" and not framework:
        stdin = sys.stdin.buffer.read()
    if script is not None:
        chained = hook_run.run_chained(script, rest, stdin)
        if chained.problem is not None:
            render.error(chained.problem)
        if chained.code != 0:
            return chained.code
    say = render.stderr_line
    try:
        from govsnap.repo import open_repo

        # The repository git runs the hook for: GIT_DIR, relative to the directory git
        # runs the hook in, when git set it.
        repo = open_repo(Path.cwd(), env)
        _scrub_environment()
        if name == "pre-push":
            if framework:
                updates = hook_run.framework_updates(env, repo)
                rest = rest or [env.get("PRE_COMMIT_REMOTE_NAME", "")]
            else:
                updates = hook_run.parse_push_lines(stdin)
            return hook_run.pre_push(repo, rest, updates, say)
        if name == "post-merge":
            flag = rest[0] if rest else env.get("PRE_COMMIT_IS_SQUASH_MERGE", "0")
            return hook_run.post_merge(repo, flag == "1", say)
        return hook_run.pre_receive(repo, stdin, env, say)
    except (Exception, KeyboardInterrupt) as exc:
        from govsnap.error_handler import failure

        failed = failure(exc)
        render.error(f"{name}: {failed.message}")
        # A hook that cannot even start must not let a push through unnoticed; a merge
        # that happened cannot be undone.
        return 0 if name == "post-merge" else failed.exit_code
