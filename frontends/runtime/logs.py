"""One structured line per thing an operator asks about later.

Lines are `key=value` pairs (logfmt, `outbound.log_lines`), readable by people
and by log shippers alike. Tokens never reach this module: nothing here is given
a header.
"""

from __future__ import annotations

import logging
import sys

from frontends.outbound.log_lines import logfmt as logfmt  # the one format, named here too
from sd_core import (
    Effect,
    InstanceRegistered,
    InstanceRemoved,
    MaintenanceChanged,
    SelfPreservationChanged,
    StatusChanged,
)

log = logging.getLogger("sd.registry")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # hypercorn's access log would repeat every heartbeat; keep errors only.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def log_effect(effect: Effect) -> None:
    """One line per change an operator asks about; an instance's line names it first."""
    fields: dict[str, object]
    if isinstance(effect, InstanceRegistered):
        event = "re_registered" if effect.updated else "registered"
        fields = {"probe_url": effect.probe_url}
    elif isinstance(effect, InstanceRemoved):
        event, fields = "removed", {"reason": effect.reason}
    elif isinstance(effect, StatusChanged):
        event = "status_changed"
        fields = {"old": effect.old, "new": effect.new, "reason": effect.reason}
    elif isinstance(effect, MaintenanceChanged):
        event = "maintenance_on" if effect.active else "maintenance_off"
        fields = {"reason": effect.reason}
    else:
        if isinstance(effect, SelfPreservationChanged):
            state = "on" if effect.active else "off"
            log.warning(logfmt(f"self_preservation_{state}", reason=effect.reason))
        return
    log.info(logfmt(event, service=effect.service_name, instance=effect.instance_id, **fields))
