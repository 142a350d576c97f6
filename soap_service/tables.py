"""SQLAlchemy Core table definitions: the whole schema, one place.

Times are stored as naive UTC datetimes on both SQLite and PostgreSQL. Migrations under
``migrations/versions`` are generated from this metadata (``make migration``) and a
contract test fails when the two differ.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# ---------------------------------------------------------------- ingest / queue
events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("queue", String(8), nullable=False),  # rt | batch
    Column("event_type", String(64), nullable=False),
    Column("status", String(20), nullable=False, default="pending"),
    # dispatch order: queue rank * 10 + lane rank (lower first), fixed at ingest
    Column("priority", SmallInteger, nullable=False, default=1),
    Column("email", String(320)),
    Column("mobile_phone", String(64)),
    Column("wished_channel", Integer, nullable=False, default=0),
    Column("email_format", Integer, nullable=False, default=0),
    Column("external_id", String(255)),
    Column("origin", String(255)),
    Column("language", String(32)),
    Column("country", String(32)),
    Column("registration_token", String(1024)),
    Column("mobile_app_uuid", String(255)),
    Column("scheduled_at", DateTime),
    Column("expiration_at", DateTime),
    Column("attributes", Text, nullable=False, default="{}"),  # JSON: every attribute as sent
    Column("ctx_xml", Text, nullable=False),  # the raw <ctx> element
    Column("ctx_json", Text),  # the ctx object as sent, for events pushed as JSON (REST)
    Column("error_count", Integer, nullable=False, default=0),
    Column("process_at", DateTime, nullable=False),
    # set by a manual retry: validity and attempts count again from here
    Column("requeued_at", DateTime),
    Column("claimed_by", String(128)),
    Column("claimed_until", DateTime),
    Column("last_error", Text),
    Column("idempotency_key", String(255)),
    Column("payload_hash", String(64)),
    Column("parent_id", BigId, ForeignKey("events.id", ondelete="SET NULL")),
    Column("followup_rule_id", Integer),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_events_due", "status", "priority", "process_at"),
    Index("ix_events_idempotency_key", "idempotency_key", unique=True),
    Index("ix_events_type_created", "event_type", "created_at"),
    Index("ix_events_created_at", "created_at"),
    Index("ix_events_parent_id", "parent_id"),
    UniqueConstraint("parent_id", "followup_rule_id", name="uq_events_followup_once"),
)

event_status_log = Table(
    "event_status_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", BigId, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("created_at", DateTime, nullable=False),
    Index("ix_event_status_log_event_id", "event_id"),
)

# ---------------------------------------------------------------- authentication
operators = Table(
    "operators",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(128), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("rights", String(64), nullable=False, default="mc"),  # comma-separated: mc, admin
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 of the token
    Column("operator_id", Integer, ForeignKey("operators.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

security_zones = Table(
    "security_zones",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("cidr", String(64), nullable=False),
    Column("allow_user_password", Boolean, nullable=False, default=False),
    Column("allow_empty_password", Boolean, nullable=False, default=False),
    Column("session_token_only", Boolean, nullable=False, default=False),
    Column("show_errors", Boolean, nullable=False, default=False),
    Column("is_proxy", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 of the key
    Column("prefix", String(16), nullable=False),  # first characters, to recognise a key
    Column("scopes", String(64), nullable=False, default="push"),  # push, read, admin (comma-sep.)
    Column("operator_id", Integer, ForeignKey("operators.id", ondelete="SET NULL")),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
)

# ---------------------------------------------------------------- catalog
event_types = Table(
    "event_types",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("label", String(255), nullable=False, default=""),
    Column("lane", String(16), nullable=False, default="transactional"),
    Column("max_attempts", Integer, nullable=False, default=5),
    Column("validity_seconds", Integer, nullable=False, default=86400),
    Column("retention_seconds", Integer, nullable=False, default=30 * 86400),
    # event | profile (SPEC §10); a profile-based type joins its events to a profile by
    # reconcile_on (externalId | email) and, when none matches, fails or sends (missing_profile)
    Column("targeting", String(8), nullable=False, default="event"),
    Column("reconcile_on", String(16), nullable=False, default="externalId"),
    Column("missing_profile", String(8), nullable=False, default="fail"),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

templates = Table(
    "templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("event_type", String(64), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("draft", Text, nullable=False, default="{}"),  # JSON content of the draft
    Column("paused", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_templates_event_type_channel", "event_type", "channel"),
)

template_versions = Table(
    "template_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("template_id", Integer, ForeignKey("templates.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content", Text, nullable=False),  # JSON, immutable once written
    Column("content_hash", String(64), nullable=False),
    Column("published_at", DateTime, nullable=False),
    Column("published_by", String(128), nullable=False),
    Column("unpublished_at", DateTime),
    UniqueConstraint("template_id", "version"),
)

seeds = Table(
    "seeds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("template_id", Integer, ForeignKey("templates.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(320), nullable=False),
    Column("ctx_xml", Text, nullable=False),
    Column("external_id", String(255)),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("template_id", "address"),
)

# ---------------------------------------------------------------- logs
delivery_log = Table(
    "delivery_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", BigId, ForeignKey("events.id", ondelete="CASCADE")),
    Column("template_version_id", Integer),
    Column("channel", String(8), nullable=False),
    Column("address", String(1024)),
    Column("outcome", String(20), nullable=False),  # sent | temporary | permanent | proof ...
    Column("response_code", Integer),
    Column("response_text", Text),
    Column("message_id", String(255)),
    Column("duration_ms", Integer),
    Column("is_proof", Boolean, nullable=False, default=False),
    Column("connector", String(64)),  # the connector that made the attempt
    Column("provider_id", String(255)),  # the provider's message id: receipts name it
    Column("receipt", String(16)),  # delivered | failed, from a delivery receipt
    Column("receipt_at", DateTime),
    Column("variant", String(32)),  # the template's language variant used (NULL: default)
    Column("created_at", DateTime, nullable=False),
    Index("ix_delivery_log_event_id", "event_id"),
    Index("ix_delivery_log_created_at", "created_at"),
    Index("ix_delivery_log_connector_provider_id", "connector", "provider_id"),
)

# The other parts of an SMS sent in several: the SMSC gives each part an id and sends a
# receipt per part, so each part id leads to the message's provider id (the first part's).
delivery_parts = Table(
    "delivery_parts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("connector", String(64), nullable=False),
    Column("part_id", String(255), nullable=False),
    Column("provider_id", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_delivery_parts_connector_part_id", "connector", "part_id"),
    Index("ix_delivery_parts_created_at", "created_at"),
)

tracking_log = Table(
    "tracking_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", BigId, ForeignKey("delivery_log.id", ondelete="CASCADE")),
    Column("event_id", BigId, ForeignKey("events.id", ondelete="CASCADE")),
    Column("kind", String(8), nullable=False),  # open | click
    Column("url", Text),
    Column("user_agent", String(512)),
    Column("ip", String(64)),
    Column("machine", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_tracking_log_event_id", "event_id"),
    Index("ix_tracking_log_created_at", "created_at"),
    Index("ix_tracking_log_delivery_id", "delivery_id"),  # ON DELETE CASCADE from purge
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False, default="email"),  # email | phone | token
    Column("address", String(1024), nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(16), nullable=False),  # bounce | manual | complaint (denylist)
    Column("bounce_id", BigId),  # the received bounce that caused the entry (bounces.id)
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("kind", "address"),
)

exclusion_log = Table(
    "exclusion_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", BigId, ForeignKey("events.id", ondelete="CASCADE")),
    Column("address", String(1024)),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_exclusion_log_created_at", "created_at"),
    Index("ix_exclusion_log_event_id", "event_id"),  # purge deletes by event
)

# Asynchronous bounces and complaints received (SMTP listener, IMAP poller, SES / Postmark
# webhooks), matched or not: what each one said and what it did (docs/bounces.md).  No
# foreign keys: a bounce stays listed after its event is purged.
bounces = Table(
    "bounces",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False),  # smtp | imap | ses | postmark
    Column("format", String(16), nullable=False, default=""),  # dsn, text, arf, jmrp, ...
    Column("kind", String(12), nullable=False),  # hard | soft | complaint | unknown | unparseable
    Column("matched", Boolean, nullable=False, default=False),  # names one of our deliveries
    Column("effect", String(64), nullable=False, default=""),  # what it did (deliveryFailed...)
    Column("event_id", BigId),
    Column("delivery_id", BigId),
    Column("attempt", Integer),
    Column("address", String(1024)),  # the address acted on: the delivery's, never the report's
    Column("recipient", String(320), nullable=False, default=""),  # as the report names it
    Column("status", String(16), nullable=False, default=""),  # RFC 3463 code
    Column("action", String(40), nullable=False, default=""),
    Column("diagnostic", Text, nullable=False, default=""),
    Column("return_path", String(320), nullable=False, default=""),
    Column("message_id", String(255), nullable=False, default=""),
    Column("provider_id", String(255), nullable=False, default=""),
    Column("feedback_type", String(40), nullable=False, default=""),
    Column("dedupe_key", String(64), nullable=False),  # the same report twice is one row
    Column("reported_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Index("ix_bounces_dedupe_key", "dedupe_key", unique=True),
    Index("ix_bounces_created_at", "created_at"),
    Index("ix_bounces_address_kind", "address", "kind", "created_at"),
    Index("ix_bounces_event_id", "event_id"),
)

followup_rules = Table(
    "followup_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("event_type", String(64), nullable=False),
    Column("template", String(128), nullable=False),
    Column("after_seconds", Integer, nullable=False),
    Column("condition", String(16), nullable=False),  # not-opened | not-clicked
    Column("channel", String(8), nullable=False, default="email"),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False),
)

# Each live worker's view of its connectors (circuit, counters), written with its
# heartbeat; `msgcenter connector list` reads it.  Rows go with the worker's heartbeat.
connector_health = Table(
    "connector_health",
    metadata,
    Column("worker_id", String(128), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("channel", String(8), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("state", String(12), nullable=False),  # closed | open | half-open
    Column("consecutive_failures", Integer, nullable=False),
    Column("sent", BigInteger, nullable=False),  # since the worker started
    Column("temporary", BigInteger, nullable=False),
    Column("permanent", BigInteger, nullable=False),
    Column("in_flight", Integer, nullable=False),
    Column("last_error", String(200), nullable=False, default=""),
    Column("probe_in", Float),
    Column("seen_at", DateTime, nullable=False),
)

worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("worker_id", String(128), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("seen_at", DateTime, nullable=False),
)

# ---------------------------------------------------------------- webhooks
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("secret", String(128), nullable=False),  # whsec_<base64>: needed to sign, so kept
    Column("kinds", Text, nullable=False, default=""),  # comma-separated; empty = every kind
    Column("event_types", Text, nullable=False, default=""),  # comma-separated; empty = all
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# One row per notification (a status change, an open, a click...), written in the same
# transaction as the change; the worker fans it out to deliveries and deletes it.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),  # a status, or opened | clicked | unsubscribed
    Column("event_id", BigId),  # no foreign key: the notification outlives a purge
    Column("data", Text, nullable=False, default="{}"),  # JSON: what is known at the change
    Column("created_at", DateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("endpoint_id", Integer, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
           nullable=False),
    Column("message_id", String(64), nullable=False),  # webhook-id: stable across retries
    Column("kind", String(20), nullable=False),
    Column("event_id", BigId),
    Column("payload", Text, nullable=False),  # the exact body signed and sent
    Column("status", String(12), nullable=False, default="pending"),  # pending|delivered|failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("claimed_until", DateTime),  # lease of the worker sending it
    Column("last_code", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_event_id", "event_id"),
    Index("ix_webhook_deliveries_endpoint_id", "endpoint_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", BigId, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
           nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("response_code", Integer),
    Column("response_text", Text),  # the receiver's answer (first 500 characters) or the error
    Column("duration_ms", Integer),
    Column("created_at", DateTime, nullable=False),
    Index("ix_webhook_attempts_delivery_id", "delivery_id"),
)

# ---------------------------------------------------------------- profiles (SPEC §10)
profiles = Table(
    "profiles",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("external_id", String(255), nullable=False, unique=True),
    Column("email", String(320)),  # lower-cased: reconciliation by email compares this
    Column("mobile_phone", String(64)),  # E.164
    Column("push_tokens", Text, nullable=False, default="[]"),  # JSON list
    Column("language", String(32)),
    Column("country", String(32)),
    Column("first_name", String(255)),
    Column("last_name", String(255)),
    Column("attributes", Text, nullable=False, default="{}"),  # JSON object
    # subscription per channel: when the profile opted out (NULL: subscribed)
    Column("unsubscribed_email", DateTime),
    Column("unsubscribed_sms", DateTime),
    Column("unsubscribed_push", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_profiles_email", "email"),
)

# What fatigue rules count: one row per message let through to a profile (written under
# the profile row's lock, so concurrent workers cannot both let the N+1th through).
profile_sends = Table(
    "profile_sends",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("profile_id", BigId, ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", BigId, nullable=False),  # no foreign key: counts outlive a purge
    Column("channel", String(8), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("profile_id", "event_id"),
    Index("ix_profile_sends_profile_id_created_at", "profile_id", "created_at"),
    Index("ix_profile_sends_created_at", "created_at"),
)

fatigue_rules = Table(
    "fatigue_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("max_count", Integer, nullable=False),
    Column("period_seconds", Integer, nullable=False),
    Column("channel", String(8)),  # NULL: every channel
    Column("lane", String(16)),  # NULL: every lane
    Column("exempt_critical", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False),
)
