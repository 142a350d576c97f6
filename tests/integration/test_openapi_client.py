"""A client generated from the committed OpenAPI document pushes an event and reads it.

``openapi-python-client`` (a third-party generator, run offline here) writes a Python
package from ``schema/openapi.json``; the test imports it and, against a live ``msgcenter
serve``, pushes one event, a batch and a suite-shaped event, reads their status, and
gets a typed Problem for a bad request -- as an integrator would.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from rest_support import rest_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("generated")
    config = out / "config.yml"
    config.write_text("project_name_override: mc_client\npackage_name_override: mc_client\n"
                      "post_hooks: []\n", encoding="utf-8")
    run = subprocess.run(
        [str(Path(sys.executable).parent / "openapi-python-client"), "generate",
         "--path", str(ROOT / "schema" / "openapi.json"), "--meta", "none",
         "--output-path", str(out / "mc_client"), "--config", str(config)],
        capture_output=True, text=True, timeout=300, cwd=str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("mc_client")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == "mc_client" or m.startswith("mc_client.")]:
            del sys.modules[name]


def test_generated_client_pushes_and_reads_status(generated, tmp_path: Path):
    """Push (one, batch, suite), read the status, and a typed problem for a bad event."""
    api = importlib.import_module("mc_client.api.default")
    models = importlib.import_module("mc_client.models")
    push_events = importlib.import_module("mc_client.api.default.push_events")
    get_event = importlib.import_module("mc_client.api.default.get_event")
    push_suite = importlib.import_module("mc_client.api.default.push_suite_event")
    get_suite = importlib.import_module("mc_client.api.default.get_suite_event")
    assert api is not None
    with rest_stack("sqlite", tmp_path) as stack:
        client = generated.AuthenticatedClient(base_url=stack.url, token=stack.keys["all"])
        event = models.EventInput.from_dict({
            "type": "order_confirmation", "email": "gen@example.com",
            "ctx": {"client": {"firstname": "Gen"}}})
        pushed = push_events.sync(client=client, body=event, idempotency_key="gen-1")
        assert isinstance(pushed, models.PushResult) and pushed.status == "pending"
        shown = get_event.sync(client=client, pl_id=pushed.pl_id)
        assert isinstance(shown, models.EventDetail)
        assert shown.status == "pending" and shown.address == "gen@example.com"
        assert shown.ctx.to_dict() == {"client": {"firstname": "Gen"}}

        batch = models.EventBatchInput.from_dict({"events": [
            event.to_dict(), {**event.to_dict(), "externalId": "g-2"}]})
        stored = push_events.sync(client=client, body=batch)
        assert isinstance(stored, models.BatchResult) and len(stored.events) == 2

        bad = push_events.sync(client=client, body=models.EventInput.from_dict(
            {"type": "x", "email": "nope", "ctx": {}}))
        assert isinstance(bad, models.Problem) and bad.status == 422
        assert bad.type_.value == "urn:msgcenter:problem:validation-failed"

        suite = push_suite.sync("shop", "mcshop", "order_confirmation", client=client,
                                body=models.SuiteEventInput.from_dict(
                                    {"email": "s@example.com", "ctx": {"a": "1"}}))
        assert isinstance(suite, models.SuiteEvent) and suite.status == "pending"
        again = get_suite.sync("shop", "mcshop", "order_confirmation", suite.p_key,
                               client=client)
        assert again.to_dict() == suite.to_dict()
