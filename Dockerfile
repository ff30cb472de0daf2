# crm-api: one image for the API (`crm-api serve`) and the webhook dispatchers (`crm-api worker`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 crm
WORKDIR /app

# Dependencies in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The application: code, migrations (run at start) and the committed OpenAPI document.
COPY README.md alembic.ini ./
COPY migrations ./migrations
COPY openapi ./openapi
COPY src ./src
RUN pip install --no-deps -e .

USER crm
# Used only when CRM_DATABASE_URL is unset (the embedded PostgreSQL); mount a volume here to keep it.
ENV CRM_DATA_DIR=/home/crm/data
EXPOSE 8000

# `docker run IMAGE crm-api worker --processes 2` runs dispatchers only, from the same image.
CMD ["crm-api", "serve", "--host", "0.0.0.0", "--port", "8000"]
