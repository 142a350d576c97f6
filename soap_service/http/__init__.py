"""The HTTP side of the service: everything that reads a request or writes a response.

The SOAP hot path and the tracking routes are plain WSGI (measured: a framework would
cost them speed); the JSON API -- our ``/api/v1`` and the suite-compatible
``/{ORGANIZATION}/campaign/...`` -- is a Flask application mounted beside them by path
prefix (see ``docs/http.md`` for the choice).  Domain modules never import from here.
"""
