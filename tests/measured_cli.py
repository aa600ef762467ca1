"""Run several ``hires`` command lines in one fresh process and report, as JSON on stdout, each one's
exit code and what it wrote to stderr, and the process's peak resident memory over all of them.

    python tests/measured_cli.py '[["style", "show", "a.hstyle"], ["render", ...]]'

One process for all (not one each): the interpreter, torch and the networks load once, and the peak
is what a user's single run of the worst of them would reach (each starts from the same state).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile


def main() -> None:
    from hires.commands import cli
    results = []
    for args in json.loads(sys.argv[1]):
        with tempfile.TemporaryFile("w+") as err:
            saved = os.dup(2)
            os.dup2(err.fileno(), 2)
            try:
                code = cli.main(args)
            except SystemExit as e:
                code = e.code
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            err.seek(0)
            results.append({"args": args, "code": code, "err": err.read()})
    # VmHWM, not getrusage's ru_maxrss: that one keeps, across exec, the peak of the process that
    # spawned this one (a pytest process of 1.07 GiB made a 0.4 GiB run read as 1.07)
    from hires.core.canvas import peak_rss_bytes
    print(json.dumps({"results": results, "peak_rss_bytes": peak_rss_bytes()}))


if __name__ == "__main__":
    main()
