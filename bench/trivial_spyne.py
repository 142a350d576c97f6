"""The ceiling for bench/ingest.py: a trivial Spyne ``PushEvent`` service, no database.

It parses the same document/literal envelope with Spyne's stock WSGI stack and answers a
constant ``plId``; served by gunicorn with the same worker count as ``msgcenter serve``.
Run: ``gunicorn -w 2 bench.trivial_spyne:application``.
"""

from __future__ import annotations

import logging

from spyne import AnyXml, Application, Long, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

logging.getLogger("spyne").setLevel(logging.CRITICAL)


class RtEvent(ServiceBase):
    @rpc(Unicode, AnyXml, _returns=Long, _out_variable_name="plId")
    def PushEvent(ctx, sessiontoken, domEvent):
        return 72057594037927937

    @rpc(Unicode, AnyXml, _returns=AnyXml, _out_variable_name="pdomIds")
    def PushEvents(ctx, sessiontoken, domEventCollection):
        return None


application = WsgiApplication(
    Application(
        [RtEvent],
        tns="urn:nms:rtEvent",
        name="rtEvent",
        in_protocol=Soap11(validator=None),
        out_protocol=Soap11(),
    )
)
