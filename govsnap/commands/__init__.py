"""The presentation layer: one module per feature, each holding its typer commands and how
their results are shown (cli.py assembles them), and the entry point git's hooks run
(hook_run.py). Modules here parse, call one library operation and render; they decide
nothing. They import the library lazily, inside each command, so that `govsnap --help`
and a hook start without loading what they do not run.
"""
