"""Settings: environment variables ``MC_*`` over an optional TOML file, one frozen object.

Precedence: environment > TOML file (``MC_CONFIG`` or ``./msgcenter.toml``) > defaults.
TOML keys are the variable names without the ``MC_`` prefix, lower-cased
(``database_url = "postgresql+psycopg://..."``).  Nothing here touches the database or
the network; the object is built once per process by :func:`load_settings`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from soap_service.errors import ConfigError
from soap_service.models import Channel, MobileApp, PushPlatform
from soap_service.retry import webhook_schedule

DEFAULT_DATABASE_URL = "sqlite:///./var/msgcenter.db"
_SECRET_WORDS = ("password", "token", "secret", "key")  # option names never shown


@dataclass(frozen=True)
class ConnectorConfig:
    """One ``[[connectors]]`` table of the TOML file (SPEC §7).

    The common keys are fields; everything else (host, port, system_id, base_url...) is in
    ``options``, read by the connector with :meth:`option` / :meth:`secret`.  A secret may
    be inline (``password = "..."``), or better named by ``password_file`` (a file whose
    content, trailing newline removed, is the secret) or ``password_env`` (an environment
    variable).  ``repr`` never shows a secret.
    """

    name: str
    channel: Channel
    kind: str
    priority: int = 1  # lower is tried first
    concurrency: int = 8  # messages in flight at once
    rate: float = 0.0  # messages per second, 0 = unlimited
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def secret(self, key: str, environ: Mapping[str, str] | None = None) -> str:
        """``key``, ``key_file`` or ``key_env``; "" when none is set."""
        env = os.environ if environ is None else environ
        if self.options.get(key) not in (None, ""):
            return str(self.options[key])
        if self.options.get(f"{key}_file"):
            path = str(self.options[f"{key}_file"])
            try:
                return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"connector {self.name!r}: cannot read {key}_file {path}: "
                                  f"{exc.strerror or exc}") from exc
        if self.options.get(f"{key}_env"):
            var = str(self.options[f"{key}_env"])
            if var not in env:
                raise ConfigError(f"connector {self.name!r}: {key}_env names {var}, "
                                  "which is not set")
            return env[var]
        return ""

    def __repr__(self) -> str:
        shown = {k: ("***" if any(w in k for w in _SECRET_WORDS)
                     and not k.endswith(("_file", "_env", "_id")) else v)
                 for k, v in self.options.items()}
        return (f"ConnectorConfig(name={self.name!r}, channel={self.channel.value!r}, "
                f"kind={self.kind!r}, priority={self.priority}, options={shown!r})")


def parse_connectors(raw: Any) -> tuple[ConnectorConfig, ...]:
    """The ``connectors`` array of tables, validated (names unique, limits sane)."""
    if raw is None:
        return ()
    if isinstance(raw, list | tuple) and all(isinstance(c, ConnectorConfig) for c in raw):
        return tuple(raw)
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError("connectors must be an array of tables ([[connectors]])")
    out: list[ConnectorConfig] = []
    for index, table in enumerate(raw):
        table = dict(table)
        name = str(table.pop("name", "") or "")
        where = f"connector {name!r}" if name else f"connectors[{index}]"
        if not name:
            raise ConfigError(f"{where}: name is required")
        try:
            channel = Channel(str(table.pop("channel", "")))
        except ValueError as exc:
            raise ConfigError(f"{where}: channel must be one of "
                              f"{', '.join(c.value for c in Channel)}") from exc
        kind = str(table.pop("kind", "") or "")
        if not kind:
            raise ConfigError(f"{where}: kind is required")
        try:
            priority = int(table.pop("priority", 1))
            concurrency = int(table.pop("concurrency", 8))
            rate = float(table.pop("rate", 0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: priority, concurrency and rate must be numbers") \
                from exc
        if concurrency < 1 or rate < 0:
            raise ConfigError(f"{where}: concurrency must be at least 1 and rate at least 0")
        out.append(ConnectorConfig(name, channel, kind, priority, concurrency, rate, table))
    names = [c.name for c in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"connector names must be unique: {', '.join(duplicates)}")
    return tuple(out)


def parse_apps(raw: Any) -> tuple[MobileApp, ...]:
    """The ``apps`` array of tables: ``[[apps]] uuid = "..." platform = "ios"`` -- the push
    platform of ``wishedChannel`` 40 events from that ``<mobileApp uuid>``."""
    if raw is None:
        return ()
    if isinstance(raw, list | tuple) and all(isinstance(a, MobileApp) for a in raw):
        return tuple(raw)
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError("apps must be an array of tables ([[apps]])")
    out: list[MobileApp] = []
    for index, table in enumerate(raw):
        uuid = str(table.get("uuid") or "").strip()
        unknown = sorted(set(table) - {"uuid", "platform", "name"})
        if not uuid or unknown:
            raise ConfigError(f"apps[{index}]: uuid is required; the keys are uuid, platform, "
                              "name")
        try:
            platform = PushPlatform(str(table.get("platform") or ""))
        except ValueError as exc:
            raise ConfigError(f"apps[{index}] ({uuid}): platform must be ios or android") \
                from exc
        out.append(MobileApp(uuid, platform, str(table.get("name") or "")))
    uuids = [a.uuid for a in out]
    if len(set(uuids)) != len(uuids):
        raise ConfigError("apps: each uuid may appear once")
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service. Field ``x`` is read from ``MC_X``."""

    database_url: str = DEFAULT_DATABASE_URL
    # SQLite only: FULL survives power loss; NORMAL (WAL) survives a process crash only
    sqlite_synchronous: str = "full"
    instance_id: int = 1
    public_url: str = "http://127.0.0.1:8080"
    # Authentication
    session_ttl: int = 86400  # seconds a Logon session token stays valid
    credential_cache_ttl: int = 60  # seconds a verified login/password is cached in-process
    auth_cache_ttl: int = 5  # seconds zones, sessions, API keys, operators are cached in-process
    # the web console (/console/): idle timeout of a login, whether security zones apply
    # (the caller must be in a zone allowing login/password), login rate limits
    console_idle_timeout: int = 1800
    console_session_max: int = 43200  # seconds a console login lasts at most, active or not
    console_zones: bool = True
    console_login_max_failures: int = 5  # per account and window
    console_login_ip_max_failures: int = 20  # per address and window
    console_login_window: int = 900  # seconds
    # Bad-input limits
    max_body_bytes: int = 2 * 1024 * 1024
    max_events_per_call: int = 1000
    max_xml_depth: int = 64
    max_json_bytes: int = 4 * 1024 * 1024  # a REST body (1,000 events with their ctx)
    max_json_depth: int = 32  # nesting of objects and arrays in a REST body
    # HTTP front (`msgcenter serve`): seconds a whole request may take to arrive (headers
    # and body, from the connection's start or the previous answer), and request threads
    # per HTTP process
    http_read_timeout: float = 30.0
    http_threads: int = 8
    # HTTP processes of `msgcenter serve` (its --workers wins); 0: by database
    # (cli.serve.default_workers)
    http_workers: int = 0
    # dispatch worker processes of `msgcenter serve` (more than 1: PostgreSQL only)
    dispatch_workers: int = 1
    # concurrent inserts of one process share a transaction (store.events.GroupCommit)
    ingest_group_commit: bool = True
    # Email relay
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_tls: str = "none"  # none | starttls | tls
    smtp_timeout: float = 30.0
    smtp_concurrency: int = 8  # simultaneous connections per relay
    smtp_ca_file: str = ""  # PEM bundle to verify the relay's TLS certificate (private CA)
    # Dispatch
    worker_batch_size: int = 100
    worker_poll_interval: float = 1.0
    # seconds a drain waits before the round after a small one, so that events trickling
    # in share a round (see Dispatcher._linger); at most that much on an event's way out
    worker_linger: float = 0.01
    lease_seconds: int = 120
    batch_min_share: float = 0.2  # share of each dispatch round reserved for the batch queue
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    # Tracking
    tracking_url: str = ""
    secret: str = "change-me"  # noqa: S105 - placeholder; the server warns while it is unchanged
    # Housekeeping
    retention_days: int = 30
    # Development sink
    mail_dir: str = "var/mail"
    # Bounces and complaints (docs/bounces.md); an empty domain turns VERP and the listener off
    bounce_domain: str = ""  # return paths are bounces+<token>@<bounce_domain>
    bounce_smtp_host: str = "127.0.0.1"  # where `msgcenter bounced` listens (the MX target)
    bounce_smtp_port: int = 2525
    bounce_max_bytes: int = 20 * 1024 * 1024  # larger inbound reports are refused (552)
    bounce_imap_url: str = ""  # imaps://user@host:993/INBOX?move_to=Processed (a mailbox to poll)
    bounce_imap_password: str = ""
    bounce_imap_interval: float = 60.0  # seconds between polls of that mailbox (msgcenter bounced)
    # soft bounces (4.x.x) quarantine an address after this many within this many seconds
    bounce_soft_limit: int = 3
    bounce_soft_window_seconds: int = 7 * 86400
    # previous MC_SECRET values (comma-separated): late bounces of mail sent before a
    # rotation still match their event
    bounce_old_secrets: str = ""
    # a header that also carries the return path (Postmark: X-PM-Metadata-mc-return-path,
    # which its webhooks give back as metadata); empty: none
    bounce_metadata_header: str = ""
    sns_topic_arns: str = ""  # comma-separated SNS topics whose SES notifications are accepted
    # scheme://host[:port] the SNS SigningCertURL / SubscribeURL must match in full
    sns_origin_pattern: str = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?"
    postmark_webhook_user: str = ""  # HTTP Basic credentials in the Postmark webhook URL...
    postmark_webhook_password: str = ""
    postmark_webhook_token: str = ""  # ...or this secret in an X-MC-Webhook-Token header
    # Connectors of every channel ([[connectors]] in the TOML file; SPEC §7)
    connectors: tuple[ConnectorConfig, ...] = ()
    # Addresses (docs/channels.md): the country a mobilePhone without +CC is read in
    # (a calling code "33" / "+33" or a region "FR"; empty: such numbers are refused)
    default_country_code: str = ""
    # Push: the platform of wishedChannel 40 events ([[apps]] by <mobileApp uuid> first)
    push_default_platform: str = ""  # ios | android | "" (none: such events fail)
    apps: tuple[MobileApp, ...] = ()
    # Suite-compatible REST: eventID (EVT...) -> event type ([event_ids] table in the TOML
    # file, or MC_EVENT_IDS="EVTcart=cart_abandoned,EVTorder=order_confirmation"); an
    # eventID not in the map is taken as the event type's own name
    event_ids: tuple[tuple[str, str], ...] = ()
    # Webhooks (SPEC §8)
    webhook_timeout: float = 10.0  # seconds for one delivery attempt, connect to last byte
    webhook_concurrency: int = 8  # attempts in flight at once per worker
    webhook_poll_interval: float = 1.0  # seconds; 0: this worker delivers no webhooks
    webhook_retry_schedule: str = "5s,5m,30m,2h,5h,10h,14h,20h,24h"  # then failed

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def channel_connectors(self, channel: Channel) -> list[ConnectorConfig]:
        """The connectors of ``channel`` by priority.  With no email connector declared,
        ``MC_SMTP_*`` make the default relay, named ``smtp``."""
        found = [self._with_defaults(c) for c in self.connectors if c.channel is channel]
        if not found and channel is Channel.EMAIL:
            found = [self.default_smtp_connector()]
        return sorted(found, key=lambda c: c.priority)

    def _with_defaults(self, config: ConnectorConfig) -> ConnectorConfig:
        """What depends on the service's settings: a Twilio-format connector's status
        callback is ``{MC_PUBLIC_URL}/callbacks/sms/{name}`` unless set."""
        if config.kind == "http-sms" and config.option("format") == "twilio" \
                and "status_callback" not in config.options:
            url = f"{self.public_url.rstrip('/')}/callbacks/sms/{config.name}"
            return dataclasses.replace(config, options={**config.options,
                                                        "status_callback": url})
        return config

    def all_connectors(self) -> list[ConnectorConfig]:
        """Every connector of every channel (the default SMTP relay included)."""
        return [c for channel in Channel for c in self.channel_connectors(channel)]

    def default_smtp_connector(self) -> ConnectorConfig:
        """The relay ``MC_SMTP_*`` describe, as a connector named ``smtp``."""
        options: dict[str, Any] = {
            "host": self.smtp_host, "port": self.smtp_port, "tls": self.smtp_tls,
            "timeout": self.smtp_timeout}
        if self.smtp_user:
            options["user"] = self.smtp_user
        if self.smtp_password:
            options["password"] = self.smtp_password
        if self.smtp_ca_file:
            options["ca_file"] = self.smtp_ca_file
        return ConnectorConfig("smtp", Channel.EMAIL, "smtp", concurrency=self.smtp_concurrency,
                               options=options)

    def app_platform(self, uuid: str | None) -> PushPlatform | None:
        """The push platform of a ``wishedChannel`` 40 event: its app's, else the default."""
        for app in self.apps:
            if uuid and app.uuid == uuid:
                return app.platform
        return PushPlatform(self.push_default_platform) if self.push_default_platform else None

    def event_type_for(self, event_id: str) -> str:
        """The event type a suite ``eventID`` names (itself when not mapped)."""
        return dict(self.event_ids).get(event_id, event_id)

    @property
    def effective_tracking_url(self) -> str:
        return (self.tracking_url or self.public_url).rstrip("/")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def parse_event_ids(raw: Any) -> tuple[tuple[str, str], ...]:
    """``{EVTid: type}`` (TOML table) or ``"EVTa=type_a,EVTb=type_b"`` (environment)."""
    if raw is None or raw == "":
        return ()
    if isinstance(raw, tuple):
        return raw
    if isinstance(raw, str):
        pairs = []
        for item in raw.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConfigError(f"MC_EVENT_IDS wants EVTid=type pairs separated by commas, "
                                  f"got {item.strip()!r}")
            pairs.append((key.strip(), value.strip()))
        return tuple(pairs)
    if isinstance(raw, Mapping) and all(isinstance(v, str) and v for v in raw.values()):
        return tuple((str(k), str(v)) for k, v in raw.items())
    raise ConfigError("event_ids must be a table of eventID = \"event type\"")


def _coerce(name: str, raw: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value for MC_{name.upper()}: {raw!r}") from exc


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from a TOML file, the environment and explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    toml_path = env.get("MC_CONFIG") or ""
    if not toml_path and Path("msgcenter.toml").exists():
        toml_path = "msgcenter.toml"
    if toml_path:
        try:
            values.update(tomllib.loads(Path(toml_path).read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {toml_path}: {exc}") from exc
    defaults = Settings()
    result: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "connectors":  # tables, from the TOML file only
            result[f.name] = parse_connectors(overrides.get("connectors", values.get(f.name)))
            continue
        if f.name == "apps":
            result[f.name] = parse_apps(overrides.get("apps", values.get(f.name)))
            continue
        if f.name == "event_ids":  # a TOML table, or pairs in MC_EVENT_IDS
            raw_ids = env.get("MC_EVENT_IDS", values.get(f.name))
            result[f.name] = parse_event_ids(overrides.get(f.name, raw_ids))
            continue
        default = getattr(defaults, f.name)
        raw = env.get(f"MC_{f.name.upper()}", values.get(f.name))
        if f.name in overrides:
            raw = overrides[f.name]
        result[f.name] = default if raw is None else _coerce(f.name, raw, default)
    settings = Settings(**result)
    # SPEC §2.5 allows 0-255, but plId is an xsd:long (signed 64-bit): from 128 up the ids
    # would not fit, and Java, .NET and PHP clients could not read them.
    if not 0 <= settings.instance_id <= 127:
        raise ConfigError("MC_INSTANCE_ID must be between 0 and 127 (plId is a signed xsd:long)")
    if settings.smtp_tls not in {"none", "starttls", "tls"}:
        raise ConfigError("MC_SMTP_TLS must be one of none, starttls, tls")
    if settings.http_read_timeout <= 0:
        raise ConfigError("MC_HTTP_READ_TIMEOUT must be more than 0 seconds")
    for name in ("smtp_concurrency", "worker_batch_size", "lease_seconds", "http_threads",
                 "max_json_depth", "webhook_concurrency", "dispatch_workers"):
        if getattr(settings, name) < 1:  # 0 would claim nothing, ever; SQLite reads LIMIT -1 as all
            raise ConfigError(f"MC_{name.upper()} must be at least 1")
    if not 0 <= settings.batch_min_share <= 1:
        raise ConfigError("MC_BATCH_MIN_SHARE must be between 0 and 1")
    if settings.http_workers < 0:
        raise ConfigError("MC_HTTP_WORKERS must be 0 (by database) or more")
    if not 0 <= settings.worker_linger <= 1:
        raise ConfigError("MC_WORKER_LINGER must be between 0 and 1 second")
    try:
        webhook_schedule(settings.webhook_retry_schedule)
    except ValueError as exc:
        raise ConfigError(f"MC_WEBHOOK_RETRY_SCHEDULE: {exc}") from exc
    if settings.max_json_depth > 256:  # the depth check recurses: stay far from the limit
        raise ConfigError("MC_MAX_JSON_DEPTH must be at most 256")
    if settings.webhook_timeout <= 0 or settings.webhook_poll_interval < 0:
        raise ConfigError("MC_WEBHOOK_TIMEOUT must be positive and MC_WEBHOOK_POLL_INTERVAL "
                          "at least 0")
    if settings.bounce_soft_limit < 1 or settings.bounce_soft_window_seconds < 1 \
            or settings.bounce_imap_interval <= 0:
        raise ConfigError("MC_BOUNCE_SOFT_LIMIT and MC_BOUNCE_SOFT_WINDOW_SECONDS must be at "
                          "least 1 and MC_BOUNCE_IMAP_INTERVAL positive")
    if settings.bounce_metadata_header and not re.fullmatch(r"[A-Za-z0-9-]{1,76}",
                                                            settings.bounce_metadata_header):
        raise ConfigError("MC_BOUNCE_METADATA_HEADER must be a header name")
    if "@" in settings.bounce_domain or settings.bounce_max_bytes < 1024:
        raise ConfigError("MC_BOUNCE_DOMAIN must be a domain name and MC_BOUNCE_MAX_BYTES "
                          "at least 1024")
    if settings.push_default_platform not in {"", *PushPlatform}:
        raise ConfigError("MC_PUSH_DEFAULT_PLATFORM must be ios or android (or empty)")
    if settings.default_country_code:
        from soap_service.phone import default_region

        try:
            default_region(settings.default_country_code)
        except ConfigError as exc:
            raise ConfigError(f"MC_DEFAULT_COUNTRY_CODE: {exc.message}") from exc
    try:
        re.compile(settings.sns_origin_pattern)
    except re.error as exc:
        raise ConfigError(f"MC_SNS_ORIGIN_PATTERN is not a regular expression: {exc}") from exc
    return settings
