"""What sits around one channel's connectors: priority order, failover, limits, circuits.

A :class:`ConnectorSet` holds the connectors of one channel (SPEC §7 "Failover and
limits") ordered by priority (lower first).  ``send()`` tries them in that order: a
connector whose circuit is open is skipped, a temporary failure moves the message to the
next one, a success or a permanent failure ends it; the result names the connector that
answered (``SendResult.connector``).  When every connector is down or failed temporarily,
the last temporary result comes back, so the worker retries later with its backoff.

Around each connector: a concurrency bound served by priority (urgent first), a rate
limit (messages/s) and a :class:`Circuit` that opens after ``circuit_failures``
consecutive temporary failures (default 5), lets one probe through after
``circuit_reset`` seconds (default 30) and closes on the first answer that proves the
provider is up (a success or a permanent refusal).  ``health()`` is what
``msgcenter connector list`` shows.  Push connectors send to one platform; a connector
with an ``accepts(message)`` method is only offered the messages it accepts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from soap_service.channels.base import Connector, ReceiptSink, build_connector
from soap_service.channels.limits import Clock, PrioritySlots, RateLimiter, Sleep
from soap_service.config import ConnectorConfig
from soap_service.errors import ConfigError
from soap_service.models import (
    Channel,
    ChannelMessage,
    CircuitState,
    ConnectorHealth,
    PushMessage,
    SendOutcome,
    SendResult,
)

log = logging.getLogger(__name__)

CIRCUIT_FAILURES = 5  # consecutive temporary failures that open a circuit
CIRCUIT_RESET = 30.0  # seconds an open circuit waits before letting one probe through


class Circuit:
    """A circuit breaker: closed → open after ``failures`` failures in a row → half-open
    after ``reset`` seconds (one probe at a time) → closed on success, open on failure."""

    def __init__(self, failures: int = CIRCUIT_FAILURES, reset: float = CIRCUIT_RESET,
                 *, clock: Clock = time.monotonic) -> None:
        if failures < 1 or reset <= 0:
            raise ValueError("failures must be at least 1 and reset above 0")
        self.failures = failures
        self.reset = reset
        self.state = CircuitState.CLOSED
        self.consecutive = 0
        self._clock = clock
        self._opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May a message go through now?  In half-open state only one probe at a time."""
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.OPEN:
            if self._clock() - self._opened_at < self.reset:
                return False
            self.state = CircuitState.HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def abandon(self) -> None:
        """A probe that never got an answer (cancelled): let the next one through."""
        self._probing = False

    def record(self, ok: bool) -> CircuitState | None:
        """Count one answer; the new state when it changed."""
        self._probing = False
        if ok:
            self.consecutive = 0
            if self.state is CircuitState.CLOSED:
                return None
            self.state = CircuitState.CLOSED
            return self.state
        self.consecutive += 1
        if self.state is CircuitState.HALF_OPEN or (
                self.state is CircuitState.CLOSED and self.consecutive >= self.failures):
            self.state = CircuitState.OPEN
            self._opened_at = self._clock()
            return self.state
        return None

    def probe_in(self) -> float | None:
        """Seconds until an open circuit lets a probe through (None unless open)."""
        if self.state is not CircuitState.OPEN:
            return None
        return max(0.0, self.reset - (self._clock() - self._opened_at))


def circuit_options(config: ConnectorConfig) -> tuple[int, float]:
    """``circuit_failures`` and ``circuit_reset`` of a connector table, validated."""
    raw_failures = config.option("circuit_failures", CIRCUIT_FAILURES)
    raw_reset = config.option("circuit_reset", CIRCUIT_RESET)
    try:
        failures, reset = int(raw_failures), float(raw_reset)
    except (TypeError, ValueError):
        failures, reset = 0, 0.0
    if failures < 1 or reset <= 0 or isinstance(raw_failures, bool):
        raise ConfigError(f"connector {config.name!r}: circuit_failures must be a whole "
                          "number of at least 1 and circuit_reset a number of seconds above 0")
    return failures, reset


def accepts(connector: Connector, message: ChannelMessage) -> bool:
    """Whether ``connector`` can send ``message`` (push: its platform)."""
    check = getattr(connector, "accepts", None)
    return True if check is None else bool(check(message))


class _Member:
    """One connector of the set with its slots, rate limiter, circuit and counters."""

    def __init__(self, connector: Connector, clock: Clock, sleep: Sleep) -> None:
        config = connector.config
        self.connector = connector
        self.config = config
        self.slots = PrioritySlots(config.concurrency)
        self.limiter = RateLimiter(config.rate, clock=clock, sleep=sleep)
        failures, reset = circuit_options(config)
        self.circuit = Circuit(failures, reset, clock=clock)
        self.sent = self.temporary = self.permanent = 0
        self.last_error = ""

    async def send(self, message: ChannelMessage, address: str, urgent: bool,
                   probe: bool = False) -> SendResult:
        """Through slots, rate limit and connector; ``probe``: the circuit's half-open
        probe (given back if this send is cancelled before an answer)."""
        try:
            await self.slots.acquire(0 if urgent else 1)
            try:
                await self.limiter.acquire()
                result = await self.connector.send(message, address, urgent=urgent)
            except Exception as exc:  # the protocol says never raise; a bug must not
                log.exception("connector.unexpected_error name=%s", self.config.name)
                result = SendResult(SendOutcome.TEMPORARY, None,
                                    f"connector error: {type(exc).__name__}")
            finally:
                self.slots.release()
        except BaseException:  # cancelled while waiting or sending: no answer to count
            if probe:
                self.circuit.abandon()
            raise
        self._count(result)
        return replace(result, connector=self.config.name)

    def _count(self, result: SendResult) -> None:
        if result.outcome is SendOutcome.SENT:
            self.sent += 1
        else:
            self.last_error = f"{result.code if result.code is not None else '-'} " \
                              f"{result.text}"[:120]
            if result.outcome is SendOutcome.TEMPORARY:
                self.temporary += 1
            else:
                self.permanent += 1
        # a permanent refusal is an answer: the provider is up
        changed = self.circuit.record(result.outcome is not SendOutcome.TEMPORARY)
        if changed is CircuitState.OPEN:
            log.warning("connector.circuit_opened name=%s failures=%d reset_s=%.0f",
                        self.config.name, self.circuit.consecutive, self.circuit.reset)
        elif changed is CircuitState.CLOSED:
            log.info("connector.circuit_closed name=%s", self.config.name)

    def allow(self) -> bool:
        before = self.circuit.state
        allowed = self.circuit.allow()
        if before is CircuitState.OPEN and self.circuit.state is CircuitState.HALF_OPEN:
            log.info("connector.circuit_half_open name=%s", self.config.name)
        return allowed

    @property
    def probing(self) -> bool:
        return self.circuit.state is CircuitState.HALF_OPEN

    def health(self) -> ConnectorHealth:
        probe_in = self.circuit.probe_in()
        return ConnectorHealth(
            name=self.config.name, channel=self.config.channel, kind=self.config.kind,
            priority=self.config.priority, state=self.circuit.state,
            consecutive_failures=self.circuit.consecutive, sent=self.sent,
            temporary=self.temporary, permanent=self.permanent, in_flight=self.slots.in_use,
            last_error=self.last_error,
            probe_in=round(probe_in, 3) if probe_in is not None else None,
        )


class ConnectorSet:
    """The connectors of one channel, tried by priority with failover."""

    def __init__(self, channel: Channel, connectors: Sequence[Connector], *,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        for connector in connectors:
            if connector.config.channel is not channel:
                raise ConfigError(f"connector {connector.config.name!r} sends "
                                  f"{connector.config.channel.value}, not {channel.value}")
        self.channel = channel
        ordered = sorted(enumerate(connectors), key=lambda ic: (ic[1].config.priority, ic[0]))
        self._members = [_Member(c, clock, sleep) for _, c in ordered]

    @classmethod
    def from_configs(cls, channel: Channel, configs: Sequence[ConnectorConfig],
                     on_receipt: ReceiptSink | None = None, *, clock: Clock = time.monotonic,
                     sleep: Sleep = asyncio.sleep) -> ConnectorSet:
        """Build every connector of ``configs`` (a ConfigError names the first bad one)."""
        return cls(channel, [build_connector(c, on_receipt) for c in configs],
                   clock=clock, sleep=sleep)

    @property
    def connectors(self) -> list[Connector]:
        return [m.connector for m in self._members]

    async def send(self, message: ChannelMessage, address: str, *,
                   urgent: bool = False) -> SendResult:
        """Send through the first connector that answers for good (see the module doc)."""
        last: SendResult | None = None
        skipped: list[_Member] = []
        for member in self._members:
            if not accepts(member.connector, message):
                continue
            if not member.allow():
                skipped.append(member)
                continue
            result = await member.send(message, address, urgent, probe=member.probing)
            if result.outcome is not SendOutcome.TEMPORARY:
                return result
            last = result
        if last is not None:
            return last
        if skipped:
            waits = [w for w in (m.circuit.probe_in() for m in skipped) if w is not None]
            names = ", ".join(m.config.name for m in skipped)
            return SendResult(SendOutcome.TEMPORARY, None,
                              f"no connector available (circuit open: {names})",
                              retry_after=min(waits) if waits else None)
        what = self.channel.value  # nothing accepted the message: nothing can, ever
        if isinstance(message, PushMessage):
            what = f"{what} ({message.platform.value})"
        return SendResult(SendOutcome.PERMANENT, None, f"no connector for {what}")

    def health(self) -> list[ConnectorHealth]:
        return [m.health() for m in self._members]

    async def close(self) -> None:
        """Close every connector (best effort, all of them even if one fails)."""
        results = await asyncio.gather(*(m.connector.close() for m in self._members),
                                       return_exceptions=True)
        for member, outcome in zip(self._members, results, strict=True):
            if isinstance(outcome, Exception):
                log.warning("connector.close_failed name=%s error=%s", member.config.name,
                            type(outcome).__name__)
