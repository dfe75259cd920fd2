# One image for the UMT database migrations: the `umt-migrations` CLI (also the Job's runner and
# the Helm hook's waiter), the UMT models and Alembic revisions, and the SchemaMigration operator.
#
#   make image                      # docker build where a daemon answers, else buildah
#   docker build -t umt-migrations .
#   docker run --rm -e DATABASE_URL=postgresql://umt:umt@db:5432/umt umt-migrations upgrade head
#
# Runs as UID 10001 and writes nothing outside /tmp, so it works with a read-only root
# filesystem. Pass the database URL through DATABASE_URL (or --url): the default,
# sqlite:///umt.db in /app, is a developer convenience and is not writable here.
#
# The runtime virtualenv holds the project and its dependencies only: pip, setuptools, wheel
# and hatchling stay in the build stages (a separate tools venv installs into /opt/venv with
# `pip --python`). Works on python:3.11-slim (python in /usr/local/bin) and on any base whose
# `python` is a CPython 3.11 with the venv module (e.g. Debian 12's python3 in /usr/bin).

ARG PYTHON_IMAGE=python:3.11-slim

# --- dependencies: the runtime venv with every dependency, none of the build tools ---------
FROM ${PYTHON_IMAGE} AS dependencies

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The build tools' own venv (pip, hatchling) and the runtime venv, created without pip.
RUN python -m venv /opt/build-tools \
 && /opt/build-tools/bin/pip install --quiet "hatchling>=1.24" \
 && python -m venv --without-pip /opt/venv

# Read from pyproject.toml, so this layer is reused (and shared between releases) until the
# dependencies change. pip byte-compiles what it installs: the read-only runtime never does.
WORKDIR /build
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['operator']))" > requirements.txt \
 && /opt/build-tools/bin/pip --python /opt/venv/bin/python install --quiet -r requirements.txt

# --- project: the wheel, checked in the full venv, and its files alone in /opt/layer ---------
FROM dependencies AS project

COPY README.md ./
COPY src ./src
RUN /opt/build-tools/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /wheels . \
 && into_venv="/opt/build-tools/bin/pip --python /opt/venv/bin/python" \
 && $into_venv install --quiet --no-deps /wheels/*.whl \
 && $into_venv check \
 && /opt/venv/bin/umt-migrations --help > /dev/null \
 && $into_venv install --quiet --no-deps --ignore-installed \
        --prefix /opt/layer/opt/venv /wheels/*.whl

# UMT's Alembic environment, byte-compiled here for the same reason.
COPY alembic.ini /opt/layer/app/
COPY migrations /opt/layer/app/migrations
RUN python -m compileall -q /opt/layer/app/migrations

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="umt-migrations" \
      org.opencontainers.image.description="UMT database migrations: CLI, runner and operator" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp

RUN groupadd --gid 10001 umt \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin umt

# Two layers: the dependencies (large, changes rarely) and the project (small, every release).
COPY --from=dependencies /opt/venv /opt/venv
COPY --from=project /opt/layer/ /
WORKDIR /app

USER 10001:10001

ENTRYPOINT ["umt-migrations"]
CMD ["--help"]
