"""`make run` (`manage.py up`) as a new user meets it: a child process on a free port, on the
embedded PostgreSQL and Redis under a MATIH_HOME of the tests' own, stopped with the SIGINT
a Ctrl-C sends to the terminal's foreground process group."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from matih.processes import Child, descendants_of, free_port, pid_alive

ROOT = Path(__file__).resolve().parent.parent
BANNER_END = "Ctrl-C stops"

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR")]


@pytest.fixture(scope="module")
def home():
    """One MATIH_HOME for the module: the first run makes the database, the later ones reuse it.
    Under /tmp itself: the embedded PostgreSQL runs as another user and needs the path open."""
    path = Path(tempfile.mkdtemp(prefix="matih-up-"))
    yield path
    stop_engines(path)
    shutil.rmtree(path, ignore_errors=True)


def engine_pids(home: Path) -> dict[str, int]:
    """The embedded engines running under `home`, by their own pid files."""
    pids = {}
    for name, pid_file in (("PostgreSQL", home / "pg" / "postmaster.pid"), ("Redis", home / "redis" / "redis.pid")):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if pid_alive(pid):
            pids[name] = pid
    return pids


def stop_engines(home: Path) -> None:
    for name, pid in engine_pids(home).items():
        os.kill(pid, signal.SIGINT if name == "PostgreSQL" else signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def start_engines(home: Path) -> None:
    """Start the embedded engines as any other command would (and leave them running)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    subprocess.run([sys.executable, "-c", "from matih import embedded; embedded.postgres_url(); embedded.redis_url()"],
                   cwd=ROOT, env={**env, "MATIH_HOME": str(home)}, check=True, capture_output=True, timeout=120)


class Up(Child):
    """`python manage.py up`, its stdout and stderr together in one file, as a terminal shows them."""

    def __init__(self, home: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(MATIH_HOME=str(home), MATIH_PORT=str(self.port), MATIH_WEB_WORKERS="1",
                   MATIH_WORKER_CONCURRENCY="1", MATIH_SIM_TIME_SCALE="0.001", PYTHONUNBUFFERED="1")
        super().__init__("manage.py up", [sys.executable, "manage.py", "up"], cwd=ROOT, env=env,
                         log_path=home / f"up-{self.port}.out")
        self.banner = ""

    def wait_for_banner(self) -> "Up":
        self.wait_for_log(BANNER_END, timeout=240)
        time.sleep(0.5)  # the banner's last line is written with the rest in one write; let it land
        self.banner = self.output()
        return self

    def output(self) -> str:
        return self.log_text()

    def login(self) -> tuple[str, str]:
        password = re.search(r"Admin login +operator@matih\.local / (\S+)", self.banner).group(1)
        key = re.search(r"API key +(mk_\S+)", self.banner).group(1)
        return password, key

    def pids(self) -> list[int]:
        """Every process of the run: `up`, its children and theirs (gunicorn's and Celery's pools)."""
        return [self.pid, *descendants_of(self.pid)]

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to `up`'s process group, as the terminal sends it; wait for the exit."""
        self.signal_group(signal.SIGINT)
        return self.process.wait(90)


@pytest.fixture
def run(home):
    """Start `manage.py up`; whatever a test leaves running is stopped after it."""
    started = []

    def start(*, banner: bool = True) -> Up:
        up = Up(home)
        started.append(up)
        return up.wait_for_banner() if banner else up

    yield start
    for up in started:
        if up.alive():
            up.interrupt()
        up.stop()


def test_banner_is_the_last_output_and_its_curl_registers_a_tenant(run, home):
    up = run()
    password, key = up.login()
    banner = up.banner.rstrip()
    assert banner.splitlines()[-1].startswith(BANNER_END)
    for shown in (f"{up.url}/api/v1/tenants", f"{up.url}/admin/provisioning/dashboard/", "operator@matih.local",
                  f"tail -f {home}/logs/web.log {home}/logs/worker.log {home}/logs/beat.log"):
        assert shown in banner

    curl = next(line for line in banner.splitlines() if line.startswith("curl "))
    assert key in curl
    created = json.loads(subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True).stdout)
    assert created["slug"] == "acme" and created["status"] == "PROVISIONING", created

    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 90
    while httpx.get(f"{up.url}/api/v1/tenants/{created['id']}", headers=headers).json()["status"] != "ACTIVE":
        assert time.monotonic() < deadline, "the tenant did not become ACTIVE"
        time.sleep(0.5)
    time.sleep(1)
    # The worker ran a whole provisioning and the web server answered: their logs went to files.
    assert up.output() == up.banner
    worker_log = (home / "logs" / "worker.log").read_text()
    assert "provisioning" in worker_log and "ready." in worker_log
    assert "Listening at" in (home / "logs" / "web.log").read_text()
    assert "beat: Starting" in (home / "logs" / "beat.log").read_text()
    for log in (home / "logs").iterdir():
        assert key not in log.read_text(), f"the demo key is in {log}"

    kept = home / "demo-login.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert json.loads(kept.read_text()) == {"email": "operator@matih.local", "password": password, "key": key}


def test_ctrl_c_stops_every_process_of_the_run_and_the_engines_it_started(run, home):
    stop_engines(home)  # so that this run starts them
    up = run()
    engines = engine_pids(home)
    assert set(engines) == {"PostgreSQL", "Redis"}
    assert "started by this run" in up.banner
    pids = up.pids() + list(engines.values()) + descendants_of(engines["PostgreSQL"])
    assert len(up.pids()) >= 5  # up, web (master and worker), worker (main and pool), beat

    assert up.interrupt() == 0
    left = [pid for pid in pids if pid_alive(pid)]
    assert left == [], f"still running after Ctrl-C: {left}"
    assert up.output().rstrip().endswith("Stopped: web, worker, beat, and the embedded PostgreSQL and Redis.")


def test_ctrl_c_while_starting_stops_what_had_started(run, home):
    stop_engines(home)
    up = run(banner=False)
    up.wait_for_log("Starting the web server", timeout=240)
    time.sleep(1)  # the children are starting; none is ready yet
    pids = up.pids() + list(engine_pids(home).values())
    assert len(pids) >= 6, pids  # up, the three children, PostgreSQL and Redis at least

    assert up.interrupt() == 0
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert BANNER_END not in up.output()
    assert up.output().rstrip().endswith("Stopped: web, worker, beat, and the embedded PostgreSQL and Redis.")


def test_engines_already_running_are_left_running(run, home):
    start_engines(home)
    engines = engine_pids(home)
    assert set(engines) == {"PostgreSQL", "Redis"}
    up = run()
    assert "embedded PostgreSQL under" in up.banner and "already running (left running on Ctrl-C)" in up.banner
    assert up.banner.rstrip().endswith("Ctrl-C stops the web server, the worker and beat.")
    pids = up.pids()

    assert up.interrupt() == 0
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert engine_pids(home) == engines
    assert up.output().rstrip().endswith("Stopped: web, worker, beat.")
    stop_engines(home)


def test_the_demo_login_is_the_same_on_every_run(run, home):
    first = run()
    password, key = first.login()
    assert first.interrupt() == 0

    second = run()
    assert second.login() == (password, key)
    response = httpx.get(f"{second.url}/api/v1/tenants", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text

    with httpx.Client(base_url=second.url) as browser:  # the admin login, as a browser posts it
        browser.get("/admin/login/")
        form = {"username": "operator@matih.local", "password": password,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"], "next": "/admin/"}
        answer = browser.post("/admin/login/?next=/admin/", data=form)
        assert answer.status_code == 302 and answer.headers["location"] == "/admin/", answer.text[:500]

    from pgserver.utils import PostmasterInfo

    uri = PostmasterInfo.read_from_pgdata(home / "pg").get_uri(database="matih")
    with psycopg.connect(uri) as conn:
        keys = conn.execute("SELECT k.name, k.revoked_at FROM iam_apikey k JOIN iam_user u ON u.id = k.user_id "
                            "WHERE u.email = 'operator@matih.local'").fetchall()
    assert keys == [("make run", None)]


def test_a_busy_port_is_refused_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "manage.py", "up", "--port", str(port)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"Cannot serve on 127.0.0.1:{port}" in done.stderr and "Set MATIH_PORT" in done.stderr
    assert "Starting the web server" not in done.stdout


def test_in_the_simulated_cloud_beat_sweeps_every_two_seconds(run, home):
    """A retry waits its backoff scaled with the simulated time (1 s and up); it is resumed by the next
    sweep, so `make run` sweeps every 2 s there (MATIH_SWEEP_INTERVAL's simulated default), and sets
    beat's schedule to the setting on every start (the migration made it with another value before)."""
    log = home / "logs" / "beat.log"

    def sweeps_logged() -> list[str]:
        text = log.read_text() if log.exists() else ""
        return [json.loads(line)["ts"] for line in text.splitlines() if "Sending due task provisioning: sweep" in line]

    earlier = len(sweeps_logged())  # an earlier run's, in the same home
    up = run()
    deadline = time.monotonic() + 30
    while len(sweeps_logged()) < earlier + 4:
        assert time.monotonic() < deadline, "beat did not sweep four times in 30 s"
        time.sleep(0.5)
    from datetime import datetime

    stamps = [datetime.fromisoformat(ts) for ts in sweeps_logged()[earlier:]][-3:]
    seconds = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    assert all(1.5 <= s <= 3.0 for s in seconds), seconds
    assert up.alive()
