"""Asynchronous bounces and complaints: from what arrives to :class:`BounceReport` values.

- :mod:`.verp` — signed return paths ``bounces+<token>@<domain>`` naming (event, attempt);
- :mod:`.parse` — one inbound message (DSN, plain-text bounce, ARF, auto-reply) → reports;
- :mod:`.providers` / :mod:`.sns` — SES-through-SNS and Postmark webhooks → reports;
- :mod:`.listener` — the SMTP server of the bounce domain; :mod:`.imap` — a mailbox poller;
- :mod:`.record` — what a report does: matched by its return path, recorded and acted on
  (``store.bounces``); the listener's and the poller's callback.

Only :mod:`.record` touches the database: the listener and the poller hand reports to a
callback (docs/bounces.md).
"""
