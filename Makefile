# Ladder: `make run` serves the embedded demo; `make test` runs the checks and every test tier.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt requirements-nodeps.txt | sha256sum | cut -c1-16)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# The unit tier never sees the production variables, whatever the shell exports.
UNIT_ENV := env -u DATABASE_URL -u REDIS_URL -u SECRET_KEY -u ALLOWED_HOSTS -u DEBUG LADDER_BROKER_DIR=var/test-broker

.PHONY: install browser run test check lint format typecheck test-unit test-integration test-browser test-all clean

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m core.launcher

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

check: install lint typecheck
	$(UNIT_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(UNIT_ENV) $(VENV)/bin/pytest -q tests/test_layering.py

test-unit: install
	$(UNIT_ENV) $(VENV)/bin/pytest -m "not integration and not browser"

test-integration: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) DEBUG=false SECRET_KEY=integration-tests \
		ALLOWED_HOSTS=testserver,127.0.0.1,localhost $(VENV)/bin/pytest -m integration

# The browser tier drives Debian's chromium (never a downloaded browser); a fresh machine gets it
# from the distribution's packages, as .ci/run does.
browser:
	@test -x /usr/bin/chromium || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

test-browser: install browser
	$(UNIT_ENV) $(VENV)/bin/pytest -m browser

test: check test-unit test-integration test-browser

test-all: test

clean:
	rm -rf var/broker var/test-*.sqlite3* var/static
