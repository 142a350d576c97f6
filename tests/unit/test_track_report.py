"""Pure parts of the reports: lane names from stored priorities."""

from __future__ import annotations

import pytest

from soap_service.ingest import priority
from soap_service.models import Lane, Queue
from soap_service.report import lane_of


@pytest.mark.parametrize("queue", list(Queue))
@pytest.mark.parametrize("lane", list(Lane))
def test_lane_of_inverts_ingest_priority(queue: Queue, lane: Lane) -> None:
    """The status report names the same queue and lane ingest encoded in ``priority``."""
    assert lane_of(priority(queue, lane.value)) == (queue.value, lane.value)
