"""matih.broker's prepared messages: what a registration pushes is what Celery would have pushed.

A Celery app of its own (the product's transport, a queue no worker reads, on the test Redis),
so that nothing here reaches the session's worker."""
from __future__ import annotations

import base64
import json
import uuid

import pytest
import redis
from celery import Celery
from celery.signals import before_task_publish
from django.conf import settings

from matih.broker import PreparedMessages

QUEUE = "matih-test-prepared"


@pytest.fixture
def app():
    app = Celery("matih-test-prepared", set_as_current=False)
    app.conf.update(broker_url=settings.REDIS_URL, broker_transport="matih.broker:Transport",
                    task_default_queue=QUEUE, task_ignore_result=True, task_time_limit=3600,
                    task_soft_time_limit=3300)

    @app.task(name="test.run_phase", shared=False)
    def run_phase(job_id, phase):  # never run: only its messages are read
        raise AssertionError

    @app.task(name="test.link", shared=False, bind=True)
    def link(self, job_id, phase):  # run in this process by Celery's tracer (run_through_the_tracer)
        from provisioning.engine import canvas

        if app.send_links_prepared and canvas.send_next_link(self.request):
            self.request.chain = None  # as provisioning.tasks does
        return "phase-done"

    app.test_task, app.link_task, app.send_links_prepared = run_phase, link, False
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(QUEUE)
    yield app
    client.delete(QUEUE)
    app.close()


def write(app, phases):
    """The canvas as the product sends it through Celery (provisioning.engine.canvas._apply)."""
    def send(job, task_id=None, producer=None):
        first, *rest = [app.test_task.si(job, phase) for phase in phases]
        first.apply_async(chain=list(reversed(rest)) or None, task_id=task_id, producer=producer)
    return send


def prepared_write(app, phases):
    """`PreparedMessages.send`'s `write` for that canvas."""
    send = write(app, phases)
    return lambda markers, producer: send(markers["job"], markers["task"], producer)


def pushed() -> list[dict]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    messages = []
    while (raw := client.rpop(QUEUE)) is not None:
        message = json.loads(raw)
        message["body"] = json.loads(base64.b64decode(message["body"]))
        messages.append(message)
    return messages


def without_ids(message: dict, *, root: bool = True) -> dict:
    """The message with what differs between any two sends (its task id, its delivery tag; and for a
    chain's next link its parent and root, which run_through_the_tracer checks) left out (a chain's first
    message is its own root)."""
    headers = {k: v for k, v in message["headers"].items() if k not in ("id", "root_id", "parent_id")}
    properties = {k: v for k, v in message["properties"].items() if k not in ("correlation_id", "delivery_tag")}
    assert message["headers"]["id"] == message["properties"]["correlation_id"]
    assert not root or message["headers"]["id"] == message["headers"]["root_id"]
    return {**message, "headers": headers, "properties": properties}


PHASES = ["VALIDATING_INPUT", "CREATING_TENANT_RECORD", "DEPLOYING_SERVICES"]


def test_a_prepared_message_is_the_message_celery_writes_with_new_ids(app):
    prepared = PreparedMessages(app)
    job = str(uuid.uuid4())
    assert prepared.send(("test.run_phase", *PHASES), {"job": job}, prepared_write(app, PHASES)), \
        "the first message of a shape is captured from Celery and sent"
    assert prepared.send(("test.run_phase", *PHASES), {"job": job}, None), "a later one needs no Celery at all"
    write(app, PHASES)(job)  # Celery's own, for comparison
    first, second, celerys = pushed()
    assert len({m["headers"]["id"] for m in (first, second, celerys)}) == 3, "each has a task id of its own"
    assert len({m["properties"]["delivery_tag"] for m in (first, second, celerys)}) == 3
    assert without_ids(first) == without_ids(second) == without_ids(celerys)
    assert [m["headers"]["parent_id"] for m in (first, second, celerys)] == [None] * 3
    assert celerys["body"][0] == [job, PHASES[0]]
    assert [sig["args"] for sig in reversed(celerys["body"][2]["chain"])] == [[job, p] for p in PHASES[1:]]


def test_another_job_and_another_shape_each_get_their_own_message(app):
    prepared = PreparedMessages(app)
    other = ["VALIDATING_INPUT", "VERIFYING_CONNECTIVITY"]
    jobs = [str(uuid.uuid4()) for _ in range(3)]
    for job, phases in zip(jobs, [PHASES, PHASES, other]):
        assert prepared.send(("test.run_phase", *phases), {"job": job}, prepared_write(app, phases))
    messages = pushed()
    assert [m["body"][0][0] for m in messages] == jobs
    assert [m["headers"]["argsrepr"] for m in messages] == [repr((job, "VALIDATING_INPUT")) for job in jobs]
    assert [len(m["body"][2]["chain"]) for m in messages] == [2, 2, 1]
    assert messages[2]["body"][2]["chain"][0]["args"] == [jobs[2], "VERIFYING_CONNECTIVITY"]


def test_with_a_publish_signal_receiver_celery_sends_it(app):
    """Receivers of before_task_publish (instrumentation, the canvas tests) must see every message."""
    prepared = PreparedMessages(app)
    seen = []

    def receiver(sender=None, headers=None, **_):
        seen.append(headers["task"])

    before_task_publish.connect(receiver, weak=False)
    try:
        assert not prepared.send(("test.run_phase", *PHASES), {"job": str(uuid.uuid4())}, prepared_write(app, PHASES))
    finally:
        before_task_publish.disconnect(receiver)
    assert pushed() == [] and seen == [], "nothing sent by this path: the caller sends it through Celery"


def test_a_job_id_that_is_not_an_id_goes_through_celery(app):
    prepared = PreparedMessages(app)
    assert not prepared.send(("test.run_phase", *PHASES), {"job": "not-a-uuid'); DROP"}, prepared_write(app, PHASES))
    assert pushed() == []


def test_a_push_that_fails_is_left_to_celery(app, monkeypatch):
    prepared = PreparedMessages(app)
    job = str(uuid.uuid4())
    assert prepared.send(("test.run_phase", *PHASES), {"job": job}, prepared_write(app, PHASES))
    pushed()

    class Down:
        def lpush(self, *args):
            raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(prepared, "_redis", lambda: Down())
    assert not prepared.send(("test.run_phase", *PHASES), {"job": job}, None)
    assert pushed() == [] and prepared._client is None
    monkeypatch.undo()
    assert prepared.send(("test.run_phase", *PHASES), {"job": job}, None), "the next one connects again"
    assert [m["body"][0][0] for m in pushed()] == [job]


def test_the_canvas_of_a_registration_goes_out_prepared(monkeypatch):
    """provisioning.engine.canvas sends through this path (no receiver connected, no countdown): Celery
    writes the first canvas of a shape, into the capture; the next ones go out prepared. (The two
    job ids are no job's: a worker that takes them answers "gone".)"""
    from provisioning.engine import canvas
    from provisioning.engine.plans import plan_for

    monkeypatch.setattr(canvas, "_prepared_messages", None)
    through_celery = []
    real = canvas._apply
    monkeypatch.setattr(canvas, "_apply", lambda *a, **k: (through_celery.append(k.get("producer")), real(*a, **k)))
    for _ in range(3):
        canvas.send_phases(str(uuid.uuid4()), plan_for("FREE"))
    assert len(through_celery) == 1 and through_celery[0] is not None, through_celery
    shape = canvas._prepared()._shapes[("provisioning.run_phase", *plan_for("FREE").phases)]
    assert shape is not None and shape.queue == "celery"


def run_through_the_tracer(app, job: str, phases: list[str]) -> dict:
    """Run the first link of a chain over `phases` in this process, by Celery's own tracer, as a worker
    does with the message (its request's chain: the rest, last first); the next link it sends."""
    from celery.app.trace import build_tracer

    rest = [app.link_task.si(job, phase) for phase in phases[1:]]
    chain = json.loads(json.dumps([dict(link) for link in reversed(rest)]))  # as a worker decodes it
    task_id, root_id = str(uuid.uuid4()), str(uuid.uuid4())
    request = {"id": task_id, "root_id": root_id, "parent_id": None, "chain": chain, "delivery_info": {},
               "args": [job, phases[0]], "kwargs": {}, "is_eager": False}
    tracer = build_tracer(app.link_task.name, app.link_task, app=app, eager=False, propagate=True)
    tracer(task_id, [job, phases[0]], {}, request)
    (message,) = pushed()
    assert message["headers"]["parent_id"] == task_id and message["headers"]["root_id"] == root_id
    return message


def test_the_next_link_of_a_chain_is_the_message_the_tracer_sends(app, monkeypatch):
    """provisioning.tasks sends a phase's next link itself (canvas.send_next_link) and clears the chain;
    what it pushes is what Celery's tracer pushes after the task returns: the next phase, carrying the
    rest, its parent the task that ran, its root the chain's."""
    from provisioning.engine import canvas

    monkeypatch.setattr(canvas, "_prepared_messages", PreparedMessages(app))
    job = str(uuid.uuid4())
    phases = ["VALIDATING_INPUT", "CREATING_TENANT_RECORD", "DEPLOYING_SERVICES", "VERIFYING_CONNECTIVITY"]
    tracers = run_through_the_tracer(app, job, phases)
    app.send_links_prepared = True
    captured, prepared = run_through_the_tracer(app, job, phases), run_through_the_tracer(app, job, phases)
    shape = canvas._prepared()._shapes[("test.link", "link", *phases[1:])]
    assert shape is not None, "the link went out prepared"
    assert without_ids(tracers, root=False) == without_ids(captured, root=False) == without_ids(prepared, root=False)
    assert tracers["body"][0] == [job, phases[1]]
    assert [link["args"] for link in reversed(tracers["body"][2]["chain"])] == [[job, p] for p in phases[2:]]


def test_a_chain_that_is_not_the_canvas_s_is_left_to_the_tracer(app, monkeypatch):
    from provisioning.engine import canvas

    monkeypatch.setattr(canvas, "_prepared_messages", PreparedMessages(app))

    class Request:
        id, root_id = str(uuid.uuid4()), str(uuid.uuid4())
        chain = [dict(app.link_task.si(str(uuid.uuid4()), "VERIFYING_CONNECTIVITY").set(countdown=5))]

    assert not canvas.send_next_link(Request), "options on a link: the tracer sends it"
    Request.chain = [dict(app.link_task.s(str(uuid.uuid4()), "VERIFYING_CONNECTIVITY"))]
    assert not canvas.send_next_link(Request), "a mutable link: the tracer sends it"
    assert pushed() == []


def test_a_finished_jobs_notification_goes_out_prepared_as_celery_writes_it(app, monkeypatch):
    """provisioning.engine.canvas.send_job_task (the job-finished notification): Celery writes the first,
    the next ones are the same bytes with new ids."""
    from provisioning.engine import canvas

    @app.task(name="test.notify", shared=False)
    def notify(job_id):  # never run: only its messages are read
        raise AssertionError

    monkeypatch.setattr(canvas, "_prepared_messages", PreparedMessages(app))
    job = str(uuid.uuid4())
    canvas.send_job_task(notify, job)
    canvas.send_job_task(notify, job)
    assert canvas._prepared()._shapes[("test.notify",)] is not None, "the second went out prepared"
    notify.apply_async((job,))  # Celery's own, for comparison
    first, second, celerys = pushed()
    assert len({m["headers"]["id"] for m in (first, second, celerys)}) == 3
    assert without_ids(first) == without_ids(second) == without_ids(celerys)
    assert celerys["body"][0] == [job] and celerys["headers"]["task"] == "test.notify"
