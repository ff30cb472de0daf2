# crm-api: one image for the API (`crm-api serve`, the default), the webhook dispatchers (`crm-api worker`)
# and the migrations (`crm-api migrate`). Settings are CRM_* environment variables (README.md, Settings);
# set CRM_DATABASE_URL (the embedded PostgreSQL is for trying it out on one machine).
#
# Rolling out a new version:
#   1. Run the migrations once, as a one-off step, with the new image, and wait for it to finish:
#          docker run --rm -e CRM_DATABASE_URL=... crm-api crm-api migrate
#      It holds a PostgreSQL advisory lock while it works, so a second copy started by mistake waits, then
#      finds nothing to do. The previous version's containers run on the new schema until they are
#      replaced, so a migration must keep them working: add columns and tables first, drop them a release
#      later.
#   2. Then replace the API and worker containers a few at a time. Each checks the migrations at start
#      (under the same lock: one quick read once they are done); with `--no-migrate`, for a database user
#      without DDL rights, it only refuses to start on a schema older than itself.
#
# Scaling out: more API containers behind the load balancer, each with `--workers N` processes; webhook
# delivery scales with more `crm-api worker --processes N` containers (start those with --no-healthcheck:
# the health check below asks the API). Dispatchers share the queue, so any number may run.

# The wheel is built apart, so the image holds neither the source tree nor the build tools.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 crm

# Dependencies in their own layer, exactly as locked and hash-checked: rebuilt only when the lock changes.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock

# crm-api itself, from the wheel, not editable, nothing else pulled in: the migrations are inside it.
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels

USER crm
WORKDIR /home/crm
# Used only when CRM_DATABASE_URL is unset (the embedded PostgreSQL); mount a volume here to keep it.
ENV CRM_DATA_DIR=/home/crm/data
EXPOSE 8000

# The API answers on /livez once it serves; the slim image has no curl, so Python asks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"]

CMD ["crm-api", "serve", "--host", "0.0.0.0", "--port", "8000"]
