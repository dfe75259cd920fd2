# One command for the whole test suite: `make test` (creates .venv and installs what it needs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test system-packages unit install quickstart e2e bench clean manifests chart-docs charts

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[operator,test]'
	touch $@

install: $(VENV)/.installed

## The whole suite: unit + integration (real PostgreSQL and MariaDB, required, never skipped).
## It sets itself up: Debian packages (buildah, debootstrap, lua5.1), .venv, the databases.
test: system-packages install
	./scripts/require-services
	$(BIN)/pytest

## Debian packages the suite needs: installed as root or with sudo, else one line saying how.
system-packages:
	./scripts/install-system-packages

## Pure tests only, no services needed.
unit: install
	$(BIN)/pytest -m unit

## Bring the embedded SQLite database to head and show where it is.
quickstart: install
	$(BIN)/python manage_migrations.py upgrade
	$(BIN)/python manage_migrations.py history
	$(BIN)/python manage_migrations.py current

## Opt-in: the same operator scenarios on a real kind cluster (needs Docker and kind).
e2e: install
	UMT_E2E=1 $(BIN)/pytest -m e2e tests/e2e

## The chart's copy of crds/ and the plain install operator/, rendered from the chart (helm template).
manifests:
	./scripts/render-manifests

## The values table of each chart's README.md, from the `# --` comments of its values.yaml.
chart-docs: install
	$(BIN)/python scripts/render-chart-docs

## Every chart's dependencies (charts/umt packs charts/schema-migration: a file:// dependency).
charts:
	./scripts/build-chart-dependencies

## The image (Dockerfile): `docker build` where a daemon answers, else buildah (daemonless, on a
## local stand-in base when python:3.11-slim cannot be pulled); prints its size. docs/image.md
IMAGE ?= umt-migrations:dev
PYTHON_IMAGE ?= python:3.11-slim
.PHONY: image
image:
	IMAGE=$(IMAGE) PYTHON_IMAGE=$(PYTHON_IMAGE) ./scripts/build-image

bench: install
	$(BIN)/python benchmarks/bench_runner.py
	$(BIN)/python benchmarks/bench_operator.py

clean:
	rm -rf $(VENV) .tools umt.db
