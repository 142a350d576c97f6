"""Regenerate the committed OpenAPI document ``schema/openapi.json`` (default public URL).

Run ``make openapi`` (or ``python scripts/write_openapi.py``) after changing the JSON API
or its document in ``soap_service/http/openapi.py``; ``tests/contract/test_openapi.py``
fails while the served document and the committed file differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from soap_service.config import Settings
from soap_service.http import openapi

OUT = Path(__file__).resolve().parent.parent / "schema" / "openapi.json"


def main() -> int:
    OUT.write_bytes(openapi.document_bytes(Settings().public_url))
    print(f"wrote {OUT.relative_to(OUT.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
