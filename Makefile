PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install run test bench migrate

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt

migrate: install
	$(BIN)/python manage.py migrate --noinput

# Web, a worker and beat on the embedded PostgreSQL and Redis (or DATABASE_URL/REDIS_URL); the banner
# (URLs, demo login and key, a curl) is printed last, the logs go to .matih/logs/; Ctrl-C stops
# everything this run started, the embedded engines included.
run: install
	$(BIN)/python manage.py up

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/control_plane.py

# WebSocket fan-out: push delay (p50/p99) and memory per idle connection with 500 clients.
.PHONY: bench-ws
bench-ws: install
	$(BIN)/python bench/ws_fanout.py

# Tenant registration over HTTP under gunicorn (WSGI sync workers; --server asgi|both), closed
# and open loop, beside its floor (bench/floor) and GET /healthz; a scratch database
# matih_bench. BENCH_ARGS="--repeat 5 --json figures.json ...".
.PHONY: bench-control-plane
bench-control-plane: install
	$(BIN)/python bench/control_plane.py $(BENCH_ARGS)
