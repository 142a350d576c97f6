"""Regenerate the committed WSDLs under ``wsdl/`` for the default public URL.

Run ``make wsdl`` (or ``python scripts/write_wsdl.py``) after changing a service
definition in ``soap_service/soap/wsdl.py``; ``tests/contract/test_wsdl.py`` fails while
the served documents and the committed files differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from soap_service.config import Settings
from soap_service.soap import wsdl

OUT = Path(__file__).resolve().parent.parent / "wsdl"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    public_url = Settings().public_url
    for schema in wsdl.SCHEMAS:
        path = OUT / wsdl.file_name(schema)
        path.write_bytes(wsdl.wsdl_bytes(schema, public_url))
        print(f"wrote {path.relative_to(OUT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
