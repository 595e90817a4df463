"""Reading the JSON files an operator hands over (trust documents, status lists), within a size bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from endcredits.errors import ValidationError


def read_json_file(path: Path, what: str, bytes_max: int) -> Any:
    """The parsed JSON of ``path``, or one ``ValidationError`` line naming the file and what is wrong."""
    if not path.is_file():
        raise ValidationError(f"{what} {path} does not exist")
    if path.stat().st_size > bytes_max:
        raise ValidationError(f"{what} {path} is larger than {bytes_max} bytes")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{what} {path} is not JSON: {exc}") from None
