"""The outbox's tables: OutboxEvent (a message to a client, leased by one worker at a time) and DeliveryAttempt (each try's status or error)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.security import utcnow

#: pending → delivered; pending → expired when the message stops being valid before a receiver
#: acknowledged it (a logout token past its exp); pending → rejected when the receiver refused a
#: Security Event Token for good (RFC 8935 2.3: HTTP 400). Pending rows are retried with capped backoff.
STATUSES = ("pending", "delivered", "expired", "rejected")


class OutboxEvent(db.Model):
    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: "backchannel_logout", later "set" (Security Event Tokens).
    kind: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    #: What caused the event, for operators (e.g. "merge-12").
    reference: Mapped[str | None] = mapped_column(String(64), index=True)
    #: The JWT id inside the body: receivers de-duplicate on it.
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: A worker that claimed the row holds it until then; after a crash another worker retries.
    locked_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(500))
    #: After this the message is no longer valid (e.g. a logout token's exp): stop retrying.
    expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()

    attempts_log: Mapped[list[DeliveryAttempt]] = relationship(back_populates="event", order_by="DeliveryAttempt.id")


class DeliveryAttempt(db.Model):
    """Delivery history: one row per try."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(String(500))

    event: Mapped[OutboxEvent] = relationship(back_populates="attempts_log")
