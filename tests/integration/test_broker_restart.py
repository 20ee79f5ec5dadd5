"""A Redis restart while workers hold unacknowledged messages: the workers reconnect and the work goes on.

With kombu's own Redis transport the worker's cleanup of the broken connection raised AttributeError,
which Celery takes for an unrecoverable error: the worker exited (status 0) and nothing consumed again.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.servers import start_redis
from tests.support.stack import start_stack

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_workers_outlive_a_redis_restart_with_steps_in_flight(tmp_path, postgres_server):
    redis = start_redis(tmp_path / "redis", appendonly=True)
    try:
        stack = start_stack(tmp_path / "stack", postgres_server, redis.url, deadline_check_s="1",
                            requeue_after_s="3", step_lease_s="5", broker_visibility_timeout_s="5")
        try:
            worker = stack.start_worker(concurrency=2)
            stack.start_beat()
            node = stack.fake_node("RESTART", delayS=1.5)
            image = stack.image()
            first = stack.task(node, image, hostname="RESTART-01")["id"]
            stack.wait_step(first, "create_vm")  # a step runs: its message is unacknowledged
            redis.restart(3.0, signal.SIGKILL)
            time.sleep(3)  # the worker notices the lost connection and cleans up
            assert worker.poll() is None, "the worker ended when Redis went away"
            second = stack.task(node, image, hostname="RESTART-02")["id"]
            for task_id in (first, second):
                assert stack.wait_for(task_id, {"completed", "failed"}, timeout=120)["status"] == "completed"
            assert worker.poll() is None
        finally:
            stack.stop()
    finally:
        redis.stop()
