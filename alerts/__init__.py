"""Alertmanager-compatible routing, grouping, inhibition and silences, delivered through a durable signed outbox.

* :mod:`qfleet.alerts.model`: alerts, matchers, routes, receivers, silences, notifications.
* :mod:`qfleet.alerts.config` / :mod:`qfleet.alerts.routing` / :mod:`qfleet.alerts.intervals`: the ``alertmanager.yml`` subset.
* :mod:`qfleet.alerts.timeline` / :mod:`qfleet.alerts.inhibit` / :mod:`qfleet.alerts.silences`: the notification timeline (pure).
* :mod:`qfleet.alerts.payloads` / :mod:`qfleet.alerts.outbox` / :mod:`qfleet.alerts.webhook`: bodies, the outbox, signed delivery.
* :mod:`qfleet.alerts.sources` / :mod:`qfleet.alerts.rules` / :mod:`qfleet.alerts.incidents`: what fires, and what it becomes.
* :mod:`qfleet.alerts.service`: the loop that ties them together (run by ``qfleet serve``).
"""

from qfleet.alerts.config import ConfigError, config_from_dict, load_config, parse_matcher
from qfleet.alerts.incidents import Incidents
from qfleet.alerts.model import Alert, AlertingConfig, Matcher, Notification, Receiver, Route, Silence
from qfleet.alerts.outbox import Outbox, OutboxItem
from qfleet.alerts.payloads import pagerduty_event, sign, verify, webhook_body
from qfleet.alerts.routing import resolve, routes_test
from qfleet.alerts.rules import load_rules
from qfleet.alerts.service import AlertService
from qfleet.alerts.timeline import Dispatcher, replay
from qfleet.alerts.webhook import Deliverer

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
