"""The fake machine behaves like a real one: it retries a callback Octoprov could not take, and its
progress outlives a lost report message, so what a chaos run measures is Octoprov, not the fake."""

from __future__ import annotations

import time

import redis

from octoprov.settings import Settings
from octoprov.targets.fake import events
from tests.support.live import serve_again
from tests.support.stack import flush_redis, start_stack
from workers.app import make_celery


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


def test_the_worker_that_powers_a_machine_on_plays_it_without_broker_messages(tmp_path, postgres_server, redis_url):
    """A machine of a pool the powering worker consumes reports from that worker's machine room: only once the
    power-on step is committed (no report comes out of order, even with no time between stages), and without a
    message through the broker."""
    flush_redis(redis_url)
    stack = start_stack(tmp_path, postgres_server, redis_url)
    try:
        stack.start_worker(concurrency=2)
        node, image = stack.fake_node("ROOM", delayS=0, callbackDelayS=0), stack.image()
        ids = [stack.task(node, image, hostname=f"ROOM-{n:02d}")["id"] for n in range(6)]
        assert [stack.wait_for(task_id, {"completed", "failed"}, timeout=120)["status"] for task_id in ids] == \
            ["completed"] * len(ids)
        stats = make_celery(Settings.from_env(stack.env)).control.inspect(timeout=10).stats() or {}
    finally:
        stack.stop()
    answers = [(event["task"], event["answer"].get("reason")) for task_id in ids
               for event in callbacks(stack.data_dir, task_id)]
    assert answers == [(task_id, "step completed") for task_id in ids for _ in range(3)], answers
    ran = {name for worker in stats.values() for name in worker["total"]}
    assert "octoprov.step" in ran
    assert "octoprov.fake_machine_report" not in ran
