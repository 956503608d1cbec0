"""The `axolotl` command, from a script that imports nothing until it runs.

Axolotl's console script (`.venv/bin/axolotl`) imports all of Axolotl at its top. `datasets`
writes the tokenised dataset through a pool of *spawned* processes, and a spawned process
first re-runs its parent's main script: every training imported Axolotl a second time just
to save a few hundred rows (4-5 s on a quiet 2-core machine, ~9 s under load). This script
calls the console script's own entry point, `axolotl.cli.main:main`, with the same
arguments (`python pipeline/axolotl_cli.py train CONFIG ...`); a spawned child finds
nothing to import here.
"""
import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: pipeline/profile.py would shadow the standard library's profile
    from axolotl.cli.main import main

    sys.argv[0] = "axolotl"
    sys.exit(main())
