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

# Web, a worker and beat on the embedded PostgreSQL and Redis (or DATABASE_URL/REDIS_URL).
run: install
	$(BIN)/python manage.py up

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/control_plane.py
