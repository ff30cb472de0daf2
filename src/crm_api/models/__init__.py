"""Every table, so alembic sees one metadata."""

from .activities import Activity
from .base import Base
from .crm import LIFECYCLE_STAGES, Company, Contact, ExternalId
from .custom_fields import CustomFieldDefinition, CustomFieldValue
from .events import Event, EventStreamWorkspace, IdempotencyRecord
from .orders import ORDER_STATUSES, DealLineItem, Order
from .sales import STAGE_KINDS, Deal, DealStageChange, Pipeline, PipelineStage
from .service_desk import SlaPolicy, Ticket, TicketComment
from .webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .workspace import ApiKey, Workspace

__all__ = [
    "LIFECYCLE_STAGES",
    "ORDER_STATUSES",
    "STAGE_KINDS",
    "Activity",
    "ApiKey",
    "Base",
    "Company",
    "Contact",
    "CustomFieldDefinition",
    "CustomFieldValue",
    "Deal",
    "DealLineItem",
    "DealStageChange",
    "Event",
    "EventStreamWorkspace",
    "ExternalId",
    "IdempotencyRecord",
    "Order",
    "Pipeline",
    "PipelineStage",
    "SlaPolicy",
    "Ticket",
    "TicketComment",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "Workspace",
]
