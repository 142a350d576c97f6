"""The SOAP edge: our own hardened lxml front (parse once, normalise every dialect,
dispatch to plain handlers, write the suite's exact response form); Spyne only builds the
WSDL documents at start-up.  See ``docs/soap.md``.

Modules: ``xml`` (hardened parsing, limits), ``envelope`` (dialects -> SoapRequest),
``router`` (dispatch table and handlers), ``response`` (suite-form results and faults),
``faults`` (our exceptions -> faults), ``wsdl`` (Spyne -> WSDL bytes).  Metrics are in
``soap_service.metrics``.
"""
