"""Run a command that dies with its parent: `python die_with_parent.py PARENT_PID CMD [ARGS...]`.

A trainer or vLLM worker must never outlive orchestrate.py: orphaned, it would keep
writing into a run directory that a rerun has already locked and resumed (the lock
dies with its holder, the child does not). Linux's PR_SET_PDEATHSIG, which survives
exec, sends the child SIGTERM when its parent dies for any reason, SIGKILL included.
Elsewhere the command simply runs. Standard library only: it starts in milliseconds.
"""
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, cmd = int(sys.argv[1]), sys.argv[2:]
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above: nothing would signal us
            sys.exit(f"die_with_parent: parent {parent} is gone; not starting {cmd[0]}")
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
