"""crm-api: an async, API-first, headless CRM backend."""

__version__ = "0.1.0"
