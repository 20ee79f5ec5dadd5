"""Chaos runs (issue 20): the whole stack under a fault while tasks of the fake target are submitted, then
what became of them: every task final and completed, no duplicate machine, no step's side effect twice, no
HTTP 500. Prints a Markdown table, one row per scenario (tests/support/chaos.py runs each).

    python -m bench.chaos [--scenario NAME ...] [--full]

Without ``--full`` the test suite's sizes (a few minutes in all); with it the issue's: 100 worker kills over
100 tasks, 55-56 tasks for each outage, leases and visibility timeout 15 s, deadlines 90 s, the periodic job
every 5 s and up to 150 s to settle (`make chaos`, about 7 minutes). Exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import sys

from tests.support import chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=sorted(chaos.SCENARIOS),
                        help="run only this scenario (repeatable; default: all, in the issue's order)")
    parser.add_argument("--full", action="store_true", help="the issue's sizes and timings instead of the tests'")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random kill moments")
    args = parser.parse_args(argv)
    scenarios = chaos.FULL_SCENARIOS if args.full else chaos.SCENARIOS
    size = chaos.FULL if args.full else chaos.TEST
    names = args.scenario or list(scenarios)
    results = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result = chaos.run(scenarios[name], size, seed=args.seed)
        print(result.report(), file=sys.stderr, flush=True)
        results.append(result)
    print(f"Chaos runs ({'issue 20 sizes' if args.full else 'test sizes'}; lease {size.lease_s} s, deadlines "
          f"{size.deadline_s} s, deadline check {size.deadline_check_s} s, settle at most {size.settle_s:.0f} s)")
    print()
    print(chaos.HEADER)
    for result in results:
        print(result.row())
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
