"""Write the service's OpenAPI spec: `python -m deepscreen.service.openapi > docs/openapi.json`.

The committed docs/openapi.json is what clients and schemathesis read; a test checks it equals /openapi.json."""

from __future__ import annotations

import json
import sys


def spec_json() -> str:
    from .app import openapi_spec

    return json.dumps(openapi_spec(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(spec_json())
