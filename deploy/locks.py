"""A Redis lock on a Terraform state (the StateLock interface), with a TTL renewed while held.

- acquire: `SET key owner NX PX ttl`. The same owner acquiring again (a
  redelivered task of the same job) refreshes the TTL and succeeds.
- renew / release: Lua scripts that compare the owner token and only then
  PEXPIRE / DEL, atomically: a lock that expired and was taken by someone else
  is never extended or deleted by its former owner.
- `held(...)`: a context manager for a long apply. It waits for the lock (up to
  `wait` seconds, else TransientInfraError with a retry hint), renews the TTL from
  a background thread every ttl/3 while the body runs, and releases on exit. If a
  renewal finds the lock gone (Redis lost it, or the TTL lapsed during a long
  pause), `lost` is set and logged; the caller decides whether to trust its work.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import contextmanager

import redis

from deploy.errors import TransientInfraError

logger = logging.getLogger(__name__)

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _redis_error(exc: Exception, key: str) -> TransientInfraError:
    return TransientInfraError(f"Redis unavailable for the lock {key}", provider_message=str(exc),
                               hint="the lock store (REDIS_URL) must be reachable; retrying may succeed")


class Held:
    """A lock held by `owner`; `lost` turns true if a renewal found it gone."""

    def __init__(self, key: str, owner: str):
        self.key = key
        self.owner = owner
        self.lost = False
        self.renewals = 0


class RedisStateLock:
    def __init__(self, client: redis.Redis | str):
        self.redis = redis.Redis.from_url(client) if isinstance(client, str) else client
        self._renew = self.redis.register_script(RENEW)
        self._release = self.redis.register_script(RELEASE)

    # --- StateLock -----------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl_seconds: int) -> bool:
        try:
            if self.redis.set(key, owner, nx=True, px=int(ttl_seconds * 1000)):
                return True
            return self.renew(key, owner, ttl_seconds)  # already ours: refresh
        except redis.RedisError as exc:
            raise _redis_error(exc, key) from exc

    def renew(self, key: str, owner: str, ttl_seconds: int) -> bool:
        try:
            return bool(self._renew(keys=[key], args=[owner, int(ttl_seconds * 1000)]))
        except redis.RedisError as exc:
            raise _redis_error(exc, key) from exc

    def release(self, key: str, owner: str) -> None:
        try:
            self._release(keys=[key], args=[owner])
        except redis.RedisError as exc:
            raise _redis_error(exc, key) from exc

    def holder(self, key: str) -> str | None:
        try:
            value = self.redis.get(key)
        except redis.RedisError as exc:
            raise _redis_error(exc, key) from exc
        return value.decode() if isinstance(value, bytes) else value

    # --- held while work runs ------------------------------------------------------------------

    @contextmanager
    def held(self, key: str, *, ttl_seconds: float, owner: str | None = None, wait: float = 0.0,
             poll_interval: float = 0.2):
        """Hold `key` for the duration of the block, renewing its TTL; wait up to `wait` seconds for it."""
        owner = owner or f"{uuid.uuid4()}"
        deadline = time.monotonic() + wait
        while not self.acquire(key, owner, ttl_seconds):
            if time.monotonic() >= deadline:
                raise TransientInfraError(
                    f"{key} is locked by {self.holder(key)}",
                    hint="another apply of the same state is running; this one retries after it",
                    retry_after=max(1.0, float(ttl_seconds) / 2),
                )
            time.sleep(poll_interval)
        held = Held(key, owner)
        stop = threading.Event()
        renewer = threading.Thread(target=self._keep_renewing, args=(held, ttl_seconds, stop),
                                   name=f"lock-renew:{key}", daemon=True)
        renewer.start()
        try:
            yield held
        finally:
            stop.set()
            renewer.join()
            try:
                self.release(key, owner)
            except TransientInfraError:
                logger.warning("could not release %s; it expires in %ss", key, ttl_seconds)

    def _keep_renewing(self, held: Held, ttl_seconds: float, stop: threading.Event) -> None:
        interval = max(0.05, float(ttl_seconds) / 3)
        while not stop.wait(interval):
            try:
                if self.renew(held.key, held.owner, ttl_seconds):
                    held.renewals += 1
                    continue
            except TransientInfraError:
                logger.warning("renewing %s failed; trying again", held.key)
                continue
            held.lost = True
            logger.error("lock %s was lost while held by %s", held.key, held.owner)
            return
