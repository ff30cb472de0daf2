"""The log format: JSON by default off a terminal, aligned text on request; the request id on every record
written while a request runs. (A real server's log is read in test_operate.py.)"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from crm_api import logs
from crm_api.config import Settings


@pytest.fixture
def configured(settings: Settings) -> Iterator[None]:
    yield
    logs.configure(settings)  # back to the suite's handler, on the real stderr


def test_json_lines_carry_the_request_id_and_the_exception(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(Settings(log_format="auto"))  # stderr is not a terminal here: JSON
    log = logging.getLogger("crm_api.anything")
    token = logs.REQUEST_ID.set("req-42")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed after %d tries", 3)
    finally:
        logs.REQUEST_ID.reset(token)
    log.info("outside any request")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["level"] == "error" and first["logger"] == "crm_api.anything"
    assert first["message"] == "it failed after 3 tries"
    assert first["request_id"] == "req-42"
    assert "ValueError: boom" in first["exception"]
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-11-30T08:07:42.549Z")
    assert "request_id" not in second


def test_text_lines_for_a_person(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(Settings(log_format="text", log_level="warning"))
    logging.getLogger("crm_api.maintenance").info("not at this level")
    fields = {"request_id": "r1", "method": "GET", "route": "/v1/contacts/{id}", "status": 404}
    logs.access.warning("request", extra={"fields": fields})
    (line,) = capsys.readouterr().err.splitlines()
    assert not line.startswith("{")
    assert "WARNING" in line and "crm_api.access" in line
    assert line.endswith("request  request_id=r1 method=GET route=/v1/contacts/{id} status=404")


def test_uvicorn_logs_in_the_same_format() -> None:
    config = logs.uvicorn_config(Settings(log_format="json", log_level="warning"))
    assert config["formatters"]["crm"]["()"] == "crm_api.logs.JsonFormatter"
    assert {name: spec["level"] for name, spec in config["loggers"].items()} == {
        "uvicorn": "WARNING",
        "uvicorn.error": "WARNING",
        "uvicorn.access": "WARNING",
    }


@pytest.mark.parametrize(
    "origins", ["*", "https://app.example.com/", "app.example.com", "https://*.example.com", "ftp://x.org"]
)
def test_cors_origins_must_be_exact(origins: str) -> None:
    with pytest.raises(ValueError, match="not an exact origin"):
        Settings(cors_origins=f"http://localhost:3000, {origins}")


def test_cors_origins_listed() -> None:
    settings = Settings(cors_origins=" https://app.example.com ,http://localhost:3000,")
    assert settings.cors_origin_list() == ["https://app.example.com", "http://localhost:3000"]
