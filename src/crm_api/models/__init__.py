"""Every table, so alembic sees one metadata."""

from .activities import Activity
from .archive import ArchiveSpan
from .automations import (
    RUN_STATUSES,
    Automation,
    AutomationCursor,
    AutomationRun,
    AutomationSchedule,
    AutomationTurn,
)
from .base import Base
from .bulk import ExportJob, ExportPart, ImportJob, ImportPart, ImportRowError
from .crm import LIFECYCLE_STAGES, Company, Contact, ContactLifecycleChange, ExternalId
from .custom_fields import CustomFieldDefinition, CustomFieldValue
from .events import Event, EventStreamWorkspace, IdempotencyRecord
from .orders import ORDER_STATUSES, ContactPurchases, ContactPurchaseValues, DealLineItem, Order
from .people import MEMBER_ROLES, Member, Team
from .rollups import AttributionDelta, ContactAttribution, LeadDelta
from .sales import STAGE_KINDS, Deal, DealStageChange, Pipeline, PipelineStage
from .scoring import ScoreContribution, ScoringCursor, ScoringRule
from .segments import Segment, SegmentBuild, SegmentChange, SegmentCursor, SegmentMember
from .service_desk import SlaPolicy, Ticket, TicketComment
from .webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .workspace import ApiKey, Workspace

__all__ = [
    "LIFECYCLE_STAGES",
    "MEMBER_ROLES",
    "ORDER_STATUSES",
    "RUN_STATUSES",
    "STAGE_KINDS",
    "Activity",
    "ApiKey",
    "ArchiveSpan",
    "AttributionDelta",
    "Automation",
    "AutomationCursor",
    "AutomationRun",
    "AutomationSchedule",
    "AutomationTurn",
    "Base",
    "Company",
    "Contact",
    "ContactAttribution",
    "ContactLifecycleChange",
    "ContactPurchaseValues",
    "ContactPurchases",
    "CustomFieldDefinition",
    "CustomFieldValue",
    "Deal",
    "DealLineItem",
    "DealStageChange",
    "Event",
    "EventStreamWorkspace",
    "ExportJob",
    "ExportPart",
    "ExternalId",
    "IdempotencyRecord",
    "ImportJob",
    "ImportPart",
    "ImportRowError",
    "LeadDelta",
    "Member",
    "Order",
    "Pipeline",
    "PipelineStage",
    "ScoreContribution",
    "ScoringCursor",
    "ScoringRule",
    "Segment",
    "SegmentBuild",
    "SegmentChange",
    "SegmentCursor",
    "SegmentMember",
    "SlaPolicy",
    "Team",
    "Ticket",
    "TicketComment",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "Workspace",
]
