"""Where a registration's CPU goes: the product and the floor, in-process, without HTTP.

    python bench/registration_profile.py [--requests 1000] [--repeat 3] [--switch-off 5] [--top 0]
                                         [--json FILE]

1. Creates a scratch database (`matih_profile` on the PostgreSQL of DATABASE_URL, or the
   embedded one), migrates it and makes an operator key.
2. For the product (`matih.wsgi`) and the floor (`bench.floor.wsgi`), each in a fresh
   interpreter: warms up, then calls the WSGI application directly (the same middleware,
   view, transaction, Celery publish and logging as under gunicorn; no socket, no HTTP
   parsing) for N registrations, and reads:
   a. the CPU this process spent per registration, unprofiled (`time.process_time`);
   b. a cProfile run of N more, timed by CPU, summed into the stages of the request
      (inclusive CPU of the functions that start each stage), as shares of the whole and
      as ms scaled to the unprofiled figure (cProfile's overhead is spread evenly, roughly);
   the two targets take turns `--repeat` times, and the report gives the medians (other
   work on a shared machine slows whichever runs beside it).
3. Runs the product once more with each part the floor lacks switched off in turn (the
   Celery publish, authentication, the middleware, logging) and all at once, in
   alternating rounds (`--switch-off ROUNDS`, 0 to skip): what each part costs, by its
   absence, without cProfile's distortion.
4. Prints it all, side by side; drops the database. PostgreSQL's own CPU is not in these
   figures (bench/control_plane.py measures it under load).

The Celery messages go to Redis logical database 14 (`--redis-db`); no worker reads them,
and the keys the run made are deleted at the end.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, ScratchDatabase, ScratchRedis, base_database_url, base_redis_url, manage  # noqa: E402

WSGI = {"product": "matih.wsgi", "floor": "bench.floor.wsgi"}
SETTINGS = {"product": "matih.settings", "floor": "bench.floor.settings"}
# The stages of a request: a name, and per target the functions (file suffix, function
# name) whose inclusive times add up to the stage's. Stages do not overlap.
_BOTH = ("product", "floor")
STAGES = [
    ("request (WSGI handler)", {t: [("django/core/handlers/wsgi.py", "__call__")] for t in _BOTH}),
    ("authentication (API key lookup)", {"product": [("iam/auth.py", "authenticate")]}),
    ("body parsing", {t: [("rest_framework/request.py", "_parse")] for t in _BOTH}),
    ("input validation", {t: [("rest_framework/serializers.py", "is_valid")] for t in _BOTH}),
    ("the transaction's statements", {
        "product": [("tenants/services.py", name) for name in (
            "create_tenant_record", "set_default_roles", "create_admin_user", "configure_billing",
            "initialize_settings", "create_api_key", "create_provisioning_job")],
        "floor": [("bench/floor/views.py", "write_registration")],
    }),
    ("commit", {t: [("django/db/backends/base/base.py", "commit")] for t in _BOTH}),
    ("Celery publish (on commit)", {"product": [("tenants/services.py", "_dispatch")]}),
    ("answer rendering (serializer)", {"product": [("tenants/api.py", "render_registration")],
                                       "floor": [("rest_framework/serializers.py", "to_representation")]}),
    ("logging", {t: [("logging/__init__.py", "_log")] for t in _BOTH}),
    ("metrics", {t: [("prometheus_client/metrics.py", "inc"), ("prometheus_client/metrics.py", "observe")]
                 for t in _BOTH}),
]


def _environ(body: bytes, key: str | None) -> dict:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/tenants", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000", "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    if key:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return environ


def _register(application, prefix: str, n: int, key: str | None) -> None:
    slug = f"{prefix}-{n}"
    body = json.dumps({"name": f"Profile Tenant {n}", "slug": slug, "tier": ("FREE", "PROFESSIONAL")[n % 2],
                       "region": "eastus", "adminEmail": f"admin@{slug}.profile.test"}).encode()
    statuses = []
    response = application(_environ(body, key), lambda status, headers, exc_info=None: statuses.append(status))
    try:
        b"".join(response)
    finally:
        response.close()  # request_finished, as a WSGI server does
    if not statuses[0].startswith("201"):
        raise SystemExit(f"registration answered {statuses[0]}")


def _stage_seconds(stats, target: str) -> dict[str, float]:
    """Inclusive seconds per stage, from pstats' raw table (recursion counted once)."""
    totals = {}
    for name, by_target in STAGES:
        functions = by_target.get(target, [])
        seconds = 0.0
        for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():
            if any(filename.endswith(suffix) and function == wanted for suffix, wanted in functions):
                seconds += cumulative
        totals[name] = seconds
    return totals


def measure(target: str, requests: int, key: str | None, top: int) -> dict:
    """In this (fresh) interpreter: the target's CPU per registration, and its stages."""
    import cProfile
    import importlib
    import pstats

    application = importlib.import_module(WSGI[target]).application
    prefix = f"{target[0]}{os.getpid()}"
    for n in range(100):  # warm-up: imports, the connection, prepared statements, caches
        _register(application, f"{prefix}w", n, key)
    started = time.process_time()
    for n in range(requests):
        _register(application, prefix, n, key)
    cpu_ms = (time.process_time() - started) * 1000 / requests
    profiler = cProfile.Profile(time.process_time)  # CPU, not the waits on PostgreSQL
    profiler.enable()
    for n in range(requests):
        _register(application, f"{prefix}p", n, key)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stages = _stage_seconds(stats, target)
    whole = stages["request (WSGI handler)"] or 1.0
    if top:
        stats.sort_stats("cumulative").print_stats(top)
    return {"target": target, "requests": requests, "cpuMsPerRegistration": round(cpu_ms, 3),
            "stages": {name: {"share": round(seconds / whole, 4), "ms": round(cpu_ms * seconds / whole, 3)}
                       for name, seconds in stages.items()},
            "postgres": postgres_side(application, f"{prefix}q", requests, key)}


# The parts of the product the floor does not have, each switched off in turn (and all at
# once) in the product's process: what each costs, measured by its absence.
SWITCHES = ("Celery publish", "authentication", "middleware but the request context", "logging")


def switched_off(key: str | None, requests: int, rounds: int) -> dict:
    """CPU per registration of the product with each of SWITCHES off, in alternating rounds.

    1. Each variant gets its own WSGI handler (the middleware is read when it is built).
    2. The rounds take the variants in turn, reversed every other round, so that other
       work on the machine falls on them alike; the report gives each variant's median.
    3. Off means: the publish is not sent (the job stays PENDING for the sweeper), the view
       has no authentication, permission or throttle classes, MIDDLEWARE is only
       matih.observability's, logging is disabled.
    """
    import logging

    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    import tenants.services
    from tenants.api import TenantListCreate

    publish = tenants.services._dispatch
    view_classes = {name: getattr(TenantListCreate, name)
                    for name in ("authentication_classes", "permission_classes", "throttle_classes")}

    def handler(off: set[str]) -> tuple[WSGIHandler, str | None]:
        tenants.services._dispatch = (lambda job_id: None) if "Celery publish" in off else publish
        for name, classes in view_classes.items():
            setattr(TenantListCreate, name, [] if "authentication" in off else classes)
        logging.disable(logging.CRITICAL if "logging" in off else logging.NOTSET)
        middleware = (["matih.observability.RequestContextMiddleware"]
                      if "middleware but the request context" in off else settings.MIDDLEWARE)
        with override_settings(MIDDLEWARE=middleware):
            return WSGIHandler(), None if "authentication" in off else key

    variants = {"none (the product as it runs)": set(), **{name: {name} for name in SWITCHES},
                "all of them": set(SWITCHES)}
    readings: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_ in range(rounds):
            for name in list(variants) if round_ % 2 == 0 else list(variants)[::-1]:
                application, variant_key = handler(variants[name])
                prefix = f"a{os.getpid()}r{round_}v{list(variants).index(name)}"
                for n in range(20):
                    _register(application, f"{prefix}w", n, variant_key)
                started = time.process_time()
                for n in range(requests):
                    _register(application, prefix, n, variant_key)
                readings[name].append((time.process_time() - started) * 1000 / requests)
    finally:
        handler(set())
    return {name: {"cpuMsPerRegistration": round(statistics.median(values), 3),
                   "turns": [round(v, 3) for v in values]} for name, values in readings.items()}


def _statement_class(sql: str) -> str:
    """`INSERT iam_role`, `SELECT iam_apikey`, ...: the verb and the first table named."""
    words = sql.replace('"', " ").replace("(", " ").split()
    verb = words[0].upper() if words else "?"
    for keyword in ("INTO", "FROM", "UPDATE"):
        if keyword in (w.upper() for w in words):
            index = [w.upper() for w in words].index(keyword)
            if index + 1 < len(words):
                return f"{verb} {words[index + 1]}"
    return verb


def postgres_side(application, prefix: str, requests: int, key: str | None) -> dict:
    """PostgreSQL's CPU per registration, by statement, read from its backend's /proc entry.

    1. The connection is persistent (CONN_MAX_AGE), so one backend serves every request;
       its pid comes from pg_backend_pid().
    2. Around every statement Django runs, the backend's utime+stime (clock ticks) is read
       before and after; over many registrations the ticks add up to each statement's
       share (sampling: a tick goes to whichever statement was running).
    3. What no statement wrapper sees (BEGIN, COMMIT, Django's health check) is the
       backend's whole CPU minus the statements'.
    Only when PostgreSQL runs on this machine; else {}.
    """
    from django.db import connection

    from bench.common import cpu_seconds

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    if not Path(f"/proc/{backend}/stat").exists():
        return {}
    by_statement: dict[str, float] = {}

    def wrapper(execute, sql, params, many, context):
        before = cpu_seconds([backend])
        try:
            return execute(sql, params, many, context)
        finally:
            name = _statement_class(sql)
            by_statement[name] = by_statement.get(name, 0.0) + cpu_seconds([backend]) - before

    started = cpu_seconds([backend])
    with connection.execute_wrapper(wrapper):
        for n in range(requests):
            _register(application, prefix, n, key)
    whole = cpu_seconds([backend]) - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        if cursor.fetchone()[0] != backend:
            return {"note": "the connection changed during the run; no figures"}
    per_ms = {name: round(seconds * 1000 / requests, 3) for name, seconds in sorted(by_statement.items())}
    per_ms["BEGIN, COMMIT, health check (unwrapped)"] = round(
        (whole - sum(by_statement.values())) * 1000 / requests, 3)
    return {"backendCpuMsPerRegistration": round(whole * 1000 / requests, 3), "byStatementMs": per_ms}


def _median_of(turns: list[dict]) -> dict:
    """The median turn's figures: CPU per registration, and each stage's share and ms."""
    whole = "request (WSGI handler)"
    stages = {name: {key: round(statistics.median(t["stages"][name][key] for t in turns), 4) for key in ("share", "ms")}
              for name, _ in STAGES}
    return {
        "cpuMsPerRegistration": round(statistics.median(t["cpuMsPerRegistration"] for t in turns), 3),
        "stages": stages,
        "restMs": round(stages[whole]["ms"] - sum(v["ms"] for k, v in stages.items() if k != whole), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="registrations measured (and as many profiled)")
    parser.add_argument("--repeat", type=int, default=3, help="turns of each target; medians are reported")
    parser.add_argument("--top", type=int, default=0, help="also print cProfile's top N functions")
    parser.add_argument("--database-name", default="matih_profile")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--switch-off", type=int, default=5, metavar="ROUNDS",
                        help="rounds of the product with each part the floor lacks switched off (0: skip)")
    parser.add_argument("--child", choices=sorted(WSGI), help=argparse.SUPPRESS)
    parser.add_argument("--switches", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (0 < args.requests <= 100_000 and 0 < args.repeat <= 20):
        parser.error("requests 1-100000, repeat 1-20")
    if args.child and args.switches:
        import django

        django.setup()
        print(json.dumps(switched_off(args.key, max(50, args.requests // 5), args.switch_off)))
        return 0
    if args.child:
        print(json.dumps(measure(args.child, args.requests, args.key, args.top)))
        return 0

    database = ScratchDatabase(base_database_url(), args.database_name)
    redis = ScratchRedis(base_redis_url(), args.redis_db)
    redis.start()
    env = {**os.environ, "DATABASE_URL": database.url, "REDIS_URL": redis.url, "MATIH_DB_POOL": "false",
           "DJANGO_SETTINGS_MODULE": "matih.settings"}
    database.create()
    results = {}
    try:
        manage(env, "migrate", "--noinput")
        key = manage(env, "operator_key", "profile-operator@matih.test").strip().splitlines()[-1]
        for turn in range(args.repeat):
            for target in ("product", "floor") if turn % 2 == 0 else ("floor", "product"):
                command = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--requests",
                           str(args.requests), "--top", str(args.top if turn == 0 else 0)]
                if target == "product":
                    command += ["--key", key]
                log = Path(os.environ.get("TMPDIR", "/tmp")) / f"matih-profile-{target}.log"
                with log.open("w") as stderr:  # the product's JSON logs, as a server's would be written
                    done = subprocess.run(command, cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": SETTINGS[target]},
                                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=1800)
                if done.returncode != 0:
                    raise SystemExit(f"{target} failed ({done.returncode}); see {log}")
                *printed, last = done.stdout.strip().splitlines()
                if printed:
                    print("\n".join(printed))
                results.setdefault(target, []).append(json.loads(last))
                print(f"   {target} #{turn + 1}: {results[target][-1]['cpuMsPerRegistration']:.3f} ms CPU per "
                      "registration", file=sys.stderr, flush=True)
        switches = {}
        if args.switch_off:
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "product", "--switches",
                                   "--switch-off", str(args.switch_off), "--requests", str(args.requests),
                                   "--key", key], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, timeout=3600)
            if done.returncode != 0:
                raise SystemExit(f"the switched-off rounds failed ({done.returncode})")
            switches = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        database.drop()
        redis.cleanup()

    summary = {target: _median_of(turns) for target, turns in results.items()}
    product, floor = summary["product"], summary["floor"]
    print(f"\nCPU per registration, in-process, {args.requests} registrations a turn, median of {args.repeat} turns"
          " (PostgreSQL's CPU not included)")
    print(f"  {'stage':<34} {'product ms':>10} {'share':>6}   {'floor ms':>8} {'share':>6}")
    for name, _ in STAGES:
        p, f = product["stages"][name], floor["stages"][name]
        print(f"  {name:<34} {p['ms']:>10.3f} {p['share']:>6.1%}   {f['ms']:>8.3f} {f['share']:>6.1%}")
    print(f"  {'the rest (middleware, DRF, ...)':<34} {product['restMs']:>10.3f} {'':>6}   {floor['restMs']:>8.3f}")
    print(f"  {'whole, unprofiled':<34} {product['cpuMsPerRegistration']:>10.3f} {'':>6}   "
          f"{floor['cpuMsPerRegistration']:>8.3f}   (product / floor x"
          f"{product['cpuMsPerRegistration'] / floor['cpuMsPerRegistration']:.2f}; turns: product "
          f"{', '.join(str(t['cpuMsPerRegistration']) for t in results['product'])}; floor "
          f"{', '.join(str(t['cpuMsPerRegistration']) for t in results['floor'])})")
    print("\nPostgreSQL's CPU per registration (its backend's clock ticks, summed by statement), ms")
    statements = sorted({name for turns in results.values() for turn in turns
                         for name in turn["postgres"].get("byStatementMs", {})})
    for name in statements:
        figures = [statistics.median(turn["postgres"].get("byStatementMs", {}).get(name, 0.0) for turn in results[t])
                   for t in ("product", "floor")]
        print(f"  {name:<44} {figures[0]:>8.3f}   {figures[1]:>8.3f}")
    whole = [statistics.median(turn["postgres"].get("backendCpuMsPerRegistration", float("nan"))
                               for turn in results[t]) for t in ("product", "floor")]
    print(f"  {'whole (product, floor)':<44} {whole[0]:>8.3f}   {whole[1]:>8.3f}")
    if switches:
        print(f"\nThe product with one part the floor lacks switched off (in-process CPU per registration, median"
              f" of {args.switch_off} alternating rounds of {max(50, args.requests // 5)})")
        full = switches["none (the product as it runs)"]["cpuMsPerRegistration"]
        for name, figures in switches.items():
            saved = full - figures["cpuMsPerRegistration"]
            print(f"  off: {name:<40} {figures['cpuMsPerRegistration']:>7.3f} ms"
                  + (f"   (it costs {saved:.3f} ms)" if figures["cpuMsPerRegistration"] != full else ""))
    results = {"turns": results, "medians": summary, "switchedOff": switches}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
