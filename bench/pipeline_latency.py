"""Time from POST /tasks to the task's first step starting, with 0 and with 200 tasks parked in
their wait state, on the real stack (gunicorn API, Redis, PostgreSQL, a worker with 4 slots).

Reference, measured in the same run: a bare Celery round trip (send `octoprov.ping`, get the
answer) through the same broker and worker. The ratio says what Octoprov's own work adds.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import percentile, ratio, sized
from octoprov.settings import Settings
from tests.support.servers import start_postgres, start_redis
from tests.support.stack import start_stack
from workers.app import make_celery

SAMPLES = sized(30, 3)
PARKED = sized(200, 4)


def _first_step_latency(stack, node: int, image: int, label: str) -> list[float]:
    samples = []
    for index in range(SAMPLES):
        task = stack.task(node, image, hostname=f"{label}-{index:03d}")
        done = stack.wait_step(task["id"], "create_vm", "done", timeout=60)
        started = datetime.fromisoformat(done["steps"][0]["startedAt"])
        created = datetime.fromisoformat(task["createdAt"])
        samples.append((started - created).total_seconds() * 1000)
    return samples


def _ping_round_trips(env: dict) -> list[float]:
    app = make_celery(Settings.from_env(env))
    samples = []
    for _ in range(SAMPLES):
        began = time.perf_counter()
        app.send_task("octoprov.ping", queue="default").get(timeout=30)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="octoprov-bench-"))
    postgres, redis = start_postgres(base / "pg"), start_redis(base / "redis")
    stack = start_stack(base / "stack", postgres, redis.url)
    try:
        stack.start_worker(concurrency=4)
        image = stack.image()
        quick = stack.fake_node("BENCH", delayS=0, callbacks=False)
        _ping_round_trips(stack.env)  # warm-up: the first round trips open connections and pools
        reference = _ping_round_trips(stack.env)
        idle = _first_step_latency(stack, quick, image, "IDLE")
        for index in range(PARKED):
            stack.task(quick, image, hostname=f"PARK-{index:03d}")
        deadline = time.monotonic() + 600
        while stack.call("GET", "/tasks", 200, params={"status": "booting", "perPage": 1}).json()["total"] < \
                PARKED + SAMPLES:
            if time.monotonic() > deadline:
                raise SystemExit("parked tasks did not reach their wait state in 10 minutes")
            time.sleep(1)
        loaded = _first_step_latency(stack, quick, image, "LOADED")
    finally:
        stack.stop()
        redis.stop()
        postgres.stop()
    ref_p50, ref_p99 = statistics.median(reference), percentile(reference, 0.99)
    print(f"POST /tasks -> first step started ({SAMPLES} tasks each; 4 worker slots)")
    print(f"{'case':<28}{'p50 ms':>10}{'p99 ms':>10}{'p50 / ref':>12}")
    print(f"{'reference: celery ping':<28}{ref_p50:>10.1f}{ref_p99:>10.1f}{1.0:>12.2f}")
    for label, samples in (("0 tasks waiting", idle), (f"{PARKED} tasks waiting", loaded)):
        p50, p99 = statistics.median(samples), percentile(samples, 0.99)
        print(f"{label:<28}{p50:>10.1f}{p99:>10.1f}{p50 / ref_p50:>12.2f}")
    ratio("first step latency p50, 0 tasks waiting", statistics.median(idle), ref_p50, "ms")
    ratio(f"first step latency p50, {PARKED} tasks waiting", statistics.median(loaded), ref_p50, "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
