"""ORM models, one module per aggregate; importing this package registers every table."""

from orchestrator.models.aggregation import AggregationRun
from orchestrator.models.answers import Answer
from orchestrator.models.audit import AuditEvent
from orchestrator.models.batches import Assignment, Batch, BatchItem
from orchestrator.models.idempotency import IdempotencyKey
from orchestrator.models.jobs import JobRun
from orchestrator.models.keys import ApiKey
from orchestrator.models.ledger import (
    Bonus,
    Invoice,
    InvoiceEntry,
    InvoiceLine,
    LedgerEntry,
    RateCard,
)
from orchestrator.models.mturk import MTurkBlock, MTurkReview
from orchestrator.models.outbox import DeliveryAttempt, OutboxMessage
from orchestrator.models.projects import Item, Project
from orchestrator.models.vendor_s3 import VendorS3Object
from orchestrator.models.workforces import Vendor, Worker, WorkerProject, Workforce

__all__ = [
    "AggregationRun",
    "Answer",
    "ApiKey",
    "Assignment",
    "AuditEvent",
    "Batch",
    "BatchItem",
    "Bonus",
    "DeliveryAttempt",
    "IdempotencyKey",
    "Invoice",
    "InvoiceEntry",
    "InvoiceLine",
    "Item",
    "JobRun",
    "LedgerEntry",
    "MTurkBlock",
    "MTurkReview",
    "OutboxMessage",
    "Project",
    "RateCard",
    "Vendor",
    "VendorS3Object",
    "Worker",
    "WorkerProject",
    "Workforce",
]
