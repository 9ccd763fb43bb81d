"""Alertmanager-compatible routing, grouping, inhibition and silences, delivered through a durable signed outbox.

* :mod:`qfleet.alerts.model`: alerts, matchers, routes, receivers, silences, notifications.
* :mod:`qfleet.alerts.config` / :mod:`qfleet.alerts.matchers` / :mod:`qfleet.alerts.routing` /
  :mod:`qfleet.alerts.intervals`: the ``alertmanager.yml`` subset and its routing tree.
* :mod:`qfleet.alerts.timeline` / :mod:`qfleet.alerts.inhibit` / :mod:`qfleet.alerts.silences`: the notification
  timeline (pure).
* :mod:`qfleet.alerts.payloads` / :mod:`qfleet.alerts.outbox` / :mod:`qfleet.alerts.webhook`: bodies, the outbox,
  signed delivery.
* :mod:`qfleet.alerts.rules` (the rule files) / :mod:`qfleet.alerts.rule_queries` (their store queries) /
  :mod:`qfleet.alerts.sources` / :mod:`qfleet.alerts.incidents`: what fires, and what it becomes.
* :mod:`qfleet.alerts.service`: the loop that ties them together (run by ``qfleet serve``).
* :mod:`qfleet.alerts.am_push` / :mod:`qfleet.alerts.am_intake`: Alertmanager both ways (qfleet's alerts sent to
  an existing Alertmanager as Prometheus sends them; its webhook v4 taken in as an alert source).
* The repositories of the alerts' tables (:mod:`qfleet.alerts.schema`), their only writers: :class:`SilenceStore`,
  :class:`Incidents` (open, acknowledge, escalate, resolve), the outbox; and :func:`incident_impact`, the one
  impact the postmortem and the on-call page both show.

The names below load on first use (lazy_loader), so ``qfleet alerts routes test`` imports the config and the
routing tree, not the store, the outbox or HTTP delivery.
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "am_intake": ["AlertmanagerIntake", "intake_route"],
    "am_push": ["AlertmanagerPush"],
    "config": ["ConfigError", "config_from_dict", "load_config"],
    "impact": ["IncidentImpact", "incident_impact"],
    "incidents": ["IncidentError", "Incidents"],
    "matchers": ["MatcherError", "parse_matcher"],
    "model": ["Alert", "AlertingConfig", "Matcher", "Notification", "PagerDutyFields", "PushConfig", "Receiver",
              "Route", "Silence"],
    "outbox": ["Outbox", "OutboxItem"],
    "payloads": ["pagerduty_event", "sign", "verify", "webhook_body"],
    "routing": ["resolve", "routes_test"],
    "rules": ["AlertRulesError", "load_rules"],
    "service": ["AlertService"],
    "silence_store": ["SilenceStore"],
    "silences": ["SilenceError"],
    "timeline": ["Dispatcher", "replay"],
    "webhook": ["Deliverer"],
})

if TYPE_CHECKING:  # the same names, for type checkers (which do not run __getattr__)
    from qfleet.alerts.am_intake import AlertmanagerIntake as AlertmanagerIntake
    from qfleet.alerts.am_intake import intake_route as intake_route
    from qfleet.alerts.am_push import AlertmanagerPush as AlertmanagerPush
    from qfleet.alerts.config import ConfigError as ConfigError
    from qfleet.alerts.config import config_from_dict as config_from_dict
    from qfleet.alerts.config import load_config as load_config
    from qfleet.alerts.impact import IncidentImpact as IncidentImpact
    from qfleet.alerts.impact import incident_impact as incident_impact
    from qfleet.alerts.incidents import IncidentError as IncidentError
    from qfleet.alerts.incidents import Incidents as Incidents
    from qfleet.alerts.matchers import MatcherError as MatcherError
    from qfleet.alerts.matchers import parse_matcher as parse_matcher
    from qfleet.alerts.model import Alert as Alert
    from qfleet.alerts.model import AlertingConfig as AlertingConfig
    from qfleet.alerts.model import Matcher as Matcher
    from qfleet.alerts.model import Notification as Notification
    from qfleet.alerts.model import PagerDutyFields as PagerDutyFields
    from qfleet.alerts.model import PushConfig as PushConfig
    from qfleet.alerts.model import Receiver as Receiver
    from qfleet.alerts.model import Route as Route
    from qfleet.alerts.model import Silence as Silence
    from qfleet.alerts.outbox import Outbox as Outbox
    from qfleet.alerts.outbox import OutboxItem as OutboxItem
    from qfleet.alerts.payloads import pagerduty_event as pagerduty_event
    from qfleet.alerts.payloads import sign as sign
    from qfleet.alerts.payloads import verify as verify
    from qfleet.alerts.payloads import webhook_body as webhook_body
    from qfleet.alerts.routing import resolve as resolve
    from qfleet.alerts.routing import routes_test as routes_test
    from qfleet.alerts.rules import AlertRulesError as AlertRulesError
    from qfleet.alerts.rules import load_rules as load_rules
    from qfleet.alerts.service import AlertService as AlertService
    from qfleet.alerts.silence_store import SilenceStore as SilenceStore
    from qfleet.alerts.silences import SilenceError as SilenceError
    from qfleet.alerts.timeline import Dispatcher as Dispatcher
    from qfleet.alerts.timeline import replay as replay
    from qfleet.alerts.webhook import Deliverer as Deliverer
