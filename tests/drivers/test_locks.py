"""The Redis state lock: owner tokens, compare-and-delete, and a TTL renewed while held."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from deploy.errors import TransientInfraError
from deploy.locks import RedisStateLock


@pytest.fixture
def lock(redis_url):
    return RedisStateLock(redis_url)


def test_only_one_owner_holds_the_lock(lock, lock_key):
    assert lock.acquire(lock_key, "job-1", 30)
    assert not lock.acquire(lock_key, "job-2", 30)
    assert lock.holder(lock_key) == "job-1"
    assert lock.acquire(lock_key, "job-1", 30)  # a redelivered task of the same job


def test_another_owner_can_neither_renew_nor_release(lock, lock_key):
    lock.acquire(lock_key, "job-1", 30)
    assert not lock.renew(lock_key, "job-2", 30)
    lock.release(lock_key, "job-2")
    assert lock.holder(lock_key) == "job-1"
    lock.release(lock_key, "job-1")
    assert lock.holder(lock_key) is None


def test_an_expired_lock_goes_to_the_next_owner_and_the_old_one_cannot_touch_it(lock, lock_key):
    lock.acquire(lock_key, "job-1", 0.2)
    time.sleep(0.35)
    assert lock.acquire(lock_key, "job-2", 30)
    assert not lock.renew(lock_key, "job-1", 30)
    lock.release(lock_key, "job-1")
    assert lock.holder(lock_key) == "job-2"


def test_held_lock_outlives_its_ttl_while_renewed_then_is_released(lock, lock_key):
    with lock.held(lock_key, ttl_seconds=0.6, owner="apply-1") as held:
        time.sleep(1.5)  # two and a half TTLs
        assert lock.holder(lock_key) == "apply-1"
        assert not lock.acquire(lock_key, "apply-2", 5)
        assert held.renewals >= 3 and not held.lost
    assert lock.holder(lock_key) is None


def test_a_second_holder_waits_for_the_first(lock, lock_key):
    timeline = []

    def first():
        with lock.held(lock_key, ttl_seconds=5, owner="first"):
            timeline.append(("first-in", time.monotonic()))
            time.sleep(0.8)
            timeline.append(("first-out", time.monotonic()))

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.2)
    with lock.held(lock_key, ttl_seconds=5, owner="second", wait=10, poll_interval=0.05):
        timeline.append(("second-in", time.monotonic()))
    thread.join()

    events = dict(timeline)
    assert [name for name, _ in timeline] == ["first-in", "first-out", "second-in"]
    assert events["second-in"] >= events["first-out"]


def test_waiting_too_long_is_transient(lock, lock_key):
    lock.acquire(lock_key, "someone-else", 30)
    started = time.monotonic()
    with pytest.raises(TransientInfraError) as caught:
        with lock.held(lock_key, ttl_seconds=10, wait=0.3):
            pytest.fail("the body must not run without the lock")
    assert 0.3 <= time.monotonic() - started < 2
    assert "someone-else" in caught.value.message
    assert caught.value.retry_after == 5


def test_a_lock_taken_away_is_reported_lost(lock, lock_key):
    with lock.held(lock_key, ttl_seconds=0.3, owner="apply-1") as held:
        lock.redis.delete(lock_key)
        time.sleep(0.4)
        assert held.lost


def test_redis_unreachable_is_transient(lock_key):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lock = RedisStateLock(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(TransientInfraError):
        lock.acquire(lock_key, "job-1", 30)
