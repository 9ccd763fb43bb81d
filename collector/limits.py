"""Per-request limits on decoded OTLP data, as the OpenTelemetry SDK's span limits.

:class:`Limits` bounds what one request may make the receiver build: attributes per item,
the length of one attribute value, events and links per span, and attributes (nested values
included) per request. What exceeds a limit is dropped or truncated the OpenTelemetry way and
counted (``dropped_attributes_count``, ``dropped_events_count``, ``dropped_links_count`` and
the partial-success message), never silently. Nothing here touches I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["INT32_MAX", "Limits", "LimitsError"]

#: Largest value of the store's INTEGER columns (the dropped counts): clipped, never wrapped.
INT32_MAX = 2**31 - 1


class LimitsError(ValueError):
    """A limit that is not a positive integer; the message names it and the fix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on one OTLP request's decoded data.

    Args:
        max_attributes_per_item: attributes kept per span, event, link, resource and data
            point (the SDK's ``OTEL_ATTRIBUTE_COUNT_LIMIT``, 128). A span, event or resource
            keeps the first ones and counts the rest as dropped; a metric data point over
            it is rejected (dropping labels would merge distinct series).
        max_attribute_value_length: characters of a string value, bytes of a bytes value
            (the SDK's ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, unlimited there). 4096 keeps a
            stack-trace excerpt or an SQL statement readable while one span's attributes
            stay below 128 x 4 KiB = 512 KiB.
        max_events_per_span: events kept per span (the SDK's 128); the rest are dropped and
            counted in ``dropped_events_count``.
        max_links_per_span: links kept per span (the SDK's 128); likewise counted in
            ``dropped_links_count``.
        max_attributes_per_request: attribute values (nested array and map elements
            included) converted per request. Beyond it, span attributes are dropped and
            counted, data points are rejected. 131072 = 1024 spans x 128 attributes, about
            30 MB of Python objects: what bounds a request's memory, since the body limit
            alone lets 20 MiB of protobuf carry 1.2 M attributes (about 300 MB).

    Raises:
        LimitsError: a limit is not a positive integer (names it).

    Examples:
        >>> Limits().max_attributes_per_item
        128
        >>> Limits(max_events_per_span=0)
        Traceback (most recent call last):
        ...
        qfleet.collector.limits.LimitsError: max_events_per_span=0 must be a positive integer, e.g. 128
    """

    max_attributes_per_item: int = 128
    max_attribute_value_length: int = 4096
    max_events_per_span: int = 128
    max_links_per_span: int = 128
    max_attributes_per_request: int = 131_072

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise LimitsError(f"{f.name}={v!r} must be a positive integer, e.g. {f.default}")
