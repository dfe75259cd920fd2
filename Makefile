# One command for the whole test suite: `make test` (creates .venv and installs what it needs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test lint mutate system-packages unit install quickstart e2e bench clean manifests chart-docs charts lint-migrations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[operator,test]'
	touch $@

install: $(VENV)/.installed

## The whole suite: unit + integration (real PostgreSQL and MariaDB, required, never skipped).
## It sets itself up: Debian packages (buildah, debootstrap), .venv, the databases.
test: system-packages install lint
	./scripts/require-services
	$(BIN)/pytest

## Static checks, run before the tests (CONTRIBUTING.md): ruff; mypy --strict on src/ and its
## lighter section on tests/; the import contracts; helm lint --strict on each chart (charts/umt
## with its dependency built, in a copy); the chart's CRD copy and operator/ not stale.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy tests
	$(BIN)/lint-imports --no-logo
	@$(MAKE) --no-print-directory lint-migrations
	@set -e; helm="$$(./scripts/fetch-k8s-tools.sh)/helm"; scratch="$$(mktemp -d)"; \
	trap 'rm -rf "$$scratch"' EXIT; cp -r charts "$$scratch/"; \
	"$$helm" dependency build "$$scratch/charts/umt" >/dev/null; \
	for chart in "$$scratch"/charts/*/; do "$$helm" lint --quiet --strict "$$chart"; done; \
	if ! diff -r crds charts/umt-migrations-operator/files/crds; then \
	    echo "the chart's CRD copy is stale: run make manifests"; exit 1; fi; \
	HELM="$$helm" ./scripts/render-manifests "$$scratch/operator" 2>/dev/null; \
	if ! diff -r operator "$$scratch/operator"; then \
	    echo "operator/ is stale: run make manifests"; exit 1; fi
	@echo "lint: all checks passed"

## Mutation testing (mutmut) of the pure modules with their unit tests: graph.py, waiter.py
## (the tracker), status.py, jobs.py ([tool.mutmut] in pyproject.toml). Not part of CI: it
## takes minutes per module. One module: make mutate MUTANTS='umt_migrations.graph*'.
## Prints the share of mutants killed per module; `.venv/bin/mutmut browse` shows survivors.
MUTANTS ?=
mutate: install
	$(BIN)/pip install --quiet 'mutmut>=3.8,<4'
	$(BIN)/mutmut run $(MUTANTS) >/dev/null
	$(BIN)/mutmut results --all true | $(BIN)/python scripts/mutation-score

## Debian packages the suite needs: installed as root or with sudo, else one line saying how.
system-packages:
	./scripts/install-system-packages

## Pure tests only, no services needed.
unit: install
	$(BIN)/pytest -m unit

## Lint UMT's migration history offline (squawk + the project's rules + the guide), as CI does.
lint-migrations: install
	$(BIN)/umt-migrations lint --dialect postgresql
	$(BIN)/umt-migrations lint --dialect mysql

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
	$(BIN)/python benchmarks/bench_busy_table.py
	$(BIN)/python benchmarks/bench_operator.py

clean:
	rm -rf $(VENV) .tools umt.db
