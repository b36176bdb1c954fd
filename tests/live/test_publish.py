"""Status hints: what a sweep that resumes a thousand jobs publishes reaches the live views."""
from __future__ import annotations

import asyncio
import logging
import uuid

from channels.layers import get_channel_layer

from provisioning.live import publish
from provisioning.live.publish import DASHBOARD_GROUP, hints_of, publish_change, tenant_group


def test_a_thousand_hints_at_once_all_go_out_without_error(caplog):
    """The sweep of 1,000 due jobs logged ~900 MaxConnectionsError when each hint had a coroutine."""
    layer = get_channel_layer()
    jobs = {str(uuid.uuid4()): str(uuid.uuid4()) for _ in range(1000)}  # job -> tenant
    watched_tenant_job = next(iter(jobs))

    async def listen() -> tuple[set, list]:
        dashboard = await layer.new_channel()
        tenant = await layer.new_channel()
        await layer.group_add(DASHBOARD_GROUP, dashboard)
        await layer.group_add(tenant_group(jobs[watched_tenant_job]), tenant)
        loop = asyncio.get_running_loop()
        with caplog.at_level(logging.WARNING, logger="matih.publish"):
            await loop.run_in_executor(None, lambda: [
                publish_change(tenant_id=tenant_id, job_id=job_id, version=3, status="RUNNING")
                for job_id, tenant_id in jobs.items()])
            seen: set = set()
            messages = []
            while seen != set(jobs):
                message = await asyncio.wait_for(layer.receive(dashboard), 10)
                messages.append(message)
                seen |= {hint["jobId"] for hint in hints_of(message)}
            own = await asyncio.wait_for(layer.receive(tenant), 10)
        await layer.group_discard(DASHBOARD_GROUP, dashboard)
        return seen, messages, own

    seen, messages, own = asyncio.run(listen())
    assert seen == set(jobs), "every hint reached the dashboard"
    assert len(messages) <= 10, "coalesced into batches, not a thousand messages"
    assert own["jobId"] == watched_tenant_job and own["version"] == 3, "and each tenant's group its own"
    assert not [r for r in caplog.records if r.name == "matih.publish"], [r.getMessage() for r in caplog.records]


def test_only_the_newest_hint_of_a_job_in_a_burst_is_sent():
    layer = get_channel_layer()
    job, tenant = str(uuid.uuid4()), str(uuid.uuid4())

    async def listen() -> list:
        channel = await layer.new_channel()
        await layer.group_add(tenant_group(tenant), channel)
        for version in range(1, 51):
            publish_change(tenant_id=tenant, job_id=job, version=version, status="RUNNING")
        await asyncio.get_running_loop().run_in_executor(None, publish.flush)
        received = [await asyncio.wait_for(layer.receive(channel), 5)]
        try:
            while True:
                received.append(await asyncio.wait_for(layer.receive(channel), 0.3))
        except asyncio.TimeoutError:
            pass
        return received

    received = asyncio.run(listen())
    assert received[-1]["version"] == 50
    assert len(received) < 50, "a burst of one job's hints collapses"
