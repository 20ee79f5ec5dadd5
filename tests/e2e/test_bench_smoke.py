"""Every benchmark of `make bench` still runs: each is started with tiny sizes (``--smoke``) and must end
well and print its ratio lines (Octoprov / reference). No timing is asserted: the figures of a smoke run
mean nothing, and speed targets live in the benchmarks themselves."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.servers import unavailable

# the benchmarks `make bench` runs, and how many ratio lines each prints
BENCHMARKS = {
    "bench.pipeline_latency": 2,
    "bench.pipeline_throughput": 1,
    "bench.tftp_bench": 2,
    "bench.pxe_storm": 2,
    "bench.http_files": 2,
    "bench.kvm_start": 2,
}
RATIO = re.compile(r"^RATIO (?P<measure>.+): octoprov \S+ .+ / reference \S+ .+ = (?P<ratio>[\d.]+|inf)x", re.M)


def test_make_bench_runs_every_benchmark_listed_here():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\nbench:"):].split("\n\n", 1)[0]
    assert re.findall(r"-m (bench\.\w+)", recipe) == list(BENCHMARKS)


@pytest.mark.parametrize("module", list(BENCHMARKS))
def test_benchmark_runs_and_prints_its_ratios(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--smoke"], cwd=ROOT, capture_output=True, text=True,
                          timeout=540, stdin=subprocess.DEVNULL)
    skipped = re.search(r"skipped: (.+)", done.stdout)
    if done.returncode == 0 and skipped:
        unavailable(f"{module}: {skipped.group(1)}")
    assert done.returncode == 0, f"{module}: status {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    ratios = RATIO.findall(done.stdout)
    assert len(ratios) == BENCHMARKS[module], done.stdout
