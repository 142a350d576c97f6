"""Delivery channels: connectors turn an addressed message into a SendResult value.

``base`` holds the connector protocol and the registry of kinds (``smtp``, ``smpp``,
``http-sms``, ``apns``, ``fcm``; each imported when first used), ``failover`` the set of
one channel's connectors (priority, limits, circuits), ``direct`` sending outside the
worker (proofs, ``msgcenter connector test``).
"""
