"""What the routes of imports and exports share: finding a job of the caller's workspace, creating one,
and its status route, and the scope its objects need."""

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel

from ..auth import Principal, require
from ..deps import read_pool
from ..errors import Forbidden, NotFound
from ..http import json_response, problems
from ..ids import uuid7
from .repository import JobSql

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
JobId = Annotated[uuid.UUID, Path(alias="id")]


class JobRoutes:
    """One kind of job (``import``, ``export``): its statements, its API object and its model."""

    def __init__(
        self,
        router: APIRouter,
        noun: str,
        jobs: JobSql,
        api: Callable[[Any], dict[str, Any]],
        model: type[BaseModel],
        missing: str = "",
    ) -> None:
        self.router = router
        self.noun = noun
        self.jobs = jobs
        self.api = api
        self.model = model
        self.missing = missing
        """Said after "No <noun> <id>" (an export may have expired)."""
        self.read_scope = require(f"{noun}s:read")

    async def load(self, conn: Any, principal: Principal, job_id: uuid.UUID) -> dict[str, Any]:
        row = await self.jobs.get.fetchrow(conn, ws=principal.workspace_id, id=job_id)
        if row is None:
            raise NotFound(f"No {self.noun} {job_id}{self.missing}")
        return dict(row)

    def needs(self, principal: Principal, object_type: str, verb: str) -> None:
        """The key must also be allowed to ``verb`` the objects the job reads or writes."""
        scope = f"{object_type}:{verb}"
        if not principal.allows(scope):
            raise Forbidden(f"An {self.noun} of {object_type} needs the scope {scope}")

    async def create(
        self,
        conn: Any,
        request: Request,
        principal: Principal,
        status: str,
        now: dt.datetime | None = None,
        **fields: Any,
    ) -> Any:
        """The job's row, with what every job records of the request that made it."""
        now = now or dt.datetime.now(dt.UTC)
        return await self.jobs.create.fetchrow(
            conn,
            workspace_id=principal.workspace_id,
            id=uuid7(),
            status=status,
            actor=principal.actor,
            request_id=getattr(request.state, "request_id", None),
            created_at=now,
            updated_at=now,
            **fields,
        )

    def post(
        self,
        path: str,
        operation: str,
        summary: str,
        description: str,
        *codes: int,
        status_code: int = 200,
        **more: Any,
    ) -> Callable[[Endpoint], Endpoint]:
        """A write route that answers with the job (``path`` after ``/v1/<noun>s``)."""
        return self.router.post(
            f"/v1/{self.noun}s{path}",
            status_code=status_code,
            operation_id=f"{self.noun}s_{operation}",
            response_model=self.model,
            responses=problems(*codes, 422),
            summary=summary,
            description=description,
            **more,
        )

    def add_get(self, summary: str, description: str) -> None:
        """``GET /v1/<noun>s/{id}``: the job as it stands."""
        read_scope = self.read_scope

        @self.router.get(
            f"/v1/{self.noun}s/{{id}}",
            operation_id=f"{self.noun}s_get",
            response_model=self.model,
            responses=problems(404, 422),
            summary=summary,
            description=description,
        )
        async def get(
            job_id: JobId, principal: Annotated[Principal, read_scope], request: Request
        ) -> Response:
            return json_response(self.api(await self.load(read_pool(request), principal, job_id)))
