"""`python -m steps.interruptible MODULE ARGS` runs `python -m MODULE ARGS`, except that a
Ctrl-C ends it with status 130 instead of a traceback (pytest's own handling of Ctrl-C
starts only with its session, after a second or more of imports)."""

import runpy
import signal
import sys

if __name__ == "__main__":
    del sys.argv[0]
    try:
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
