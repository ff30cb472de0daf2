"""Every table, so alembic sees one metadata."""

from .activities import Activity
from .base import Base
from .crm import LIFECYCLE_STAGES, Company, Contact, ExternalId
from .events import Event, IdempotencyRecord
from .service_desk import SlaPolicy, Ticket, TicketComment
from .webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .workspace import ApiKey, Workspace

__all__ = [
    "LIFECYCLE_STAGES",
    "Activity",
    "ApiKey",
    "Base",
    "Company",
    "Contact",
    "Event",
    "ExternalId",
    "IdempotencyRecord",
    "SlaPolicy",
    "Ticket",
    "TicketComment",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "Workspace",
]
