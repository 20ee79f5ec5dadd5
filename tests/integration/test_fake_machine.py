"""The fake machine behaves like a real one: it retries a callback Octoprov could not take, and its
progress outlives a lost report message, so what a chaos run measures is Octoprov, not the fake."""

from __future__ import annotations

import time

import redis

from octoprov.targets.fake import events
from tests.support.live import serve_again
from tests.support.stack import flush_redis, start_stack


def callbacks(data_dir, task_id: int) -> list[dict]:
    return [event for event in events(data_dir) if event["task"] == task_id and event["action"] == "callback"]


def test_a_callback_refused_while_the_api_restarts_is_tried_again(tmp_path, postgres_server, redis_url):
    """The API is down when the machine reports its first stage: the report is retried and the task completes."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url)
    try:
        stack.start_worker(concurrency=2)
        task_id = stack.task(stack.fake_node("RETRY", callbackDelayS=2.0), stack.image(), hostname="RETRY-01")["id"]
        stack.wait_step(task_id, "power_on", "done", timeout=60)
        stack.api.stop()
        deadline = time.monotonic() + 30
        while not any("error" in event["answer"] for event in callbacks(stack.data_dir, task_id)):
            assert time.monotonic() < deadline, "the machine never reported while the API was down"
            time.sleep(0.2)
        serve_again(stack.api)
        done = stack.wait_for(task_id, {"completed", "failed"}, timeout=120)
        assert done["status"] == "completed", done
        tries = [event["attempt"] for event in callbacks(stack.data_dir, task_id)]
        assert max(tries) >= 2, tries
    finally:
        stack.stop()


def test_a_report_lost_with_the_broker_queue_is_sent_again_by_the_machine_clock(tmp_path, postgres_server,
                                                                                   redis_url):
    """The worker holding the machine's next report is killed and the queue emptied: the machine's clock
    (a beat entry) sends the report again from the machine's own progress."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url, deadline_check_s=1)
    try:
        worker = stack.start_worker(concurrency=2)
        task_id = stack.task(stack.fake_node("CLOCK", callbackDelayS=3.0), stack.image(), hostname="CLOCK-01")["id"]
        stack.wait_step(task_id, "power_on", "done", timeout=60)
        stack.kill(worker, 9)
        redis.Redis.from_url(stack.env["OCTOPROV_BROKER_URL"]).flushdb()
        assert callbacks(stack.data_dir, task_id) == []
        stack.start_worker(concurrency=2)
        stack.start_beat()
        done = stack.wait_for(task_id, {"completed", "failed"}, timeout=120)
        assert done["status"] == "completed", done
    finally:
        stack.stop()
