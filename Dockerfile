# syntax=docker/dockerfile:1
#
# One image for the UMT database migrations: the `umt-migrations` CLI (also the Job's runner),
# the UMT models and Alembic revisions, and the SchemaMigration operator (the `operator` extra).
#
#   docker build -t umt-migrations .
#   docker run --rm -e DATABASE_URL=postgresql://umt:umt@db:5432/umt umt-migrations upgrade head
#
# Runs as UID 10001 and writes nothing outside /tmp, so it works with a read-only root
# filesystem. Pass the database URL through DATABASE_URL (or --url): the default,
# sqlite:///umt.db in /app, is a developer convenience and is not writable here.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: build the wheel, install it with its extras into a virtualenv ------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
RUN python -m venv /opt/venv

COPY pyproject.toml README.md ./
COPY src ./src

# pip compiles the installed modules to bytecode here, so the read-only runtime never needs to.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && wheel="$(ls /wheels/umt_migrations-*.whl)" \
 && /opt/venv/bin/pip install "${wheel}[operator]" \
 && /opt/venv/bin/umt-migrations --help > /dev/null

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="umt-migrations" \
      org.opencontainers.image.description="UMT database migrations: CLI, Job runner and SchemaMigration operator" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp

RUN groupadd --gid 10001 umt \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin umt

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
# Byte-compile the revisions at build time: at run time the files are owned by root and the
# root filesystem may be read-only (PYTHONDONTWRITEBYTECODE keeps Python from trying).
RUN python -m compileall -q /app/migrations

USER 10001:10001

ENTRYPOINT ["umt-migrations"]
CMD ["--help"]
