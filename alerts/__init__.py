"""Alertmanager-compatible routing, grouping, inhibition and silences, delivered through a durable signed outbox.

* :mod:`alerts.model`: alerts, matchers, routes, receivers, silences, notifications.
* :mod:`alerts.config` / :mod:`alerts.routing` / :mod:`alerts.intervals`: the ``alertmanager.yml`` subset.
* :mod:`alerts.timeline` / :mod:`alerts.inhibit` / :mod:`alerts.silences`: the notification timeline (pure).
* :mod:`alerts.payloads` / :mod:`alerts.outbox` / :mod:`alerts.webhook`: bodies, the outbox, signed delivery.
* :mod:`alerts.sources` / :mod:`alerts.rules` / :mod:`alerts.incidents`: what fires, and what it becomes.
* :mod:`alerts.service`: the loop that ties them together (run by ``qfleet serve``).
"""

from alerts.config import ConfigError, config_from_dict, load_config, parse_matcher
from alerts.incidents import Incidents
from alerts.model import Alert, AlertingConfig, Matcher, Notification, Receiver, Route, Silence
from alerts.outbox import Outbox, OutboxItem
from alerts.payloads import pagerduty_event, sign, verify, webhook_body
from alerts.routing import resolve, routes_test
from alerts.rules import load_rules
from alerts.service import AlertService
from alerts.timeline import Dispatcher, replay
from alerts.webhook import Deliverer

__all__ = [
    "Alert",
    "AlertService",
    "AlertingConfig",
    "ConfigError",
    "Deliverer",
    "Dispatcher",
    "Incidents",
    "Matcher",
    "Notification",
    "Outbox",
    "OutboxItem",
    "Receiver",
    "Route",
    "Silence",
    "config_from_dict",
    "load_config",
    "load_rules",
    "pagerduty_event",
    "parse_matcher",
    "replay",
    "resolve",
    "routes_test",
    "sign",
    "verify",
    "webhook_body",
]
