# Types of the compiled module built from _span_wire.pyx (see its docstring).
from collections.abc import Callable
from typing import Any

KNOWN_FIELDS: dict[str, tuple[int, ...]]

def span_rows(body: bytes, max_attributes_per_item: int, max_attribute_value_length: int,
              max_attributes_per_request: int, promoted_keys: tuple[str, ...],
              resource: Callable[[dict[str, Any]], Any], rows: list[tuple[Any, ...]]) -> bool: ...
