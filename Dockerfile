# crm-api: one image for the API (`crm-api serve`) and the webhook dispatchers (`crm-api worker`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 crm
WORKDIR /app

# Dependencies in their own layer, exactly as locked and hash-checked: rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# The application: code, migrations (run at start) and the committed OpenAPI document.
COPY README.md alembic.ini ./
COPY migrations ./migrations
COPY openapi ./openapi
COPY pyproject.toml ./
COPY src ./src
# Installed, not editable: the code runs from site-packages; CRM_HOME says where alembic.ini and migrations are.
RUN pip install --no-deps . && rm -rf build src
ENV CRM_HOME=/app

USER crm
# Used only when CRM_DATABASE_URL is unset (the embedded PostgreSQL); mount a volume here to keep it.
ENV CRM_DATA_DIR=/home/crm/data
EXPOSE 8000

# `docker run IMAGE crm-api worker --processes 2` runs dispatchers only, from the same image.
CMD ["crm-api", "serve", "--host", "0.0.0.0", "--port", "8000"]
