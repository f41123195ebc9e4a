"""One instance in Consul's shapes: a health entry, a catalog entry, its checks.

The mapping of our model onto Consul's, decided once (docs/integrations.md):
an instance is a Consul service instance (`ID` = its instance id), and its
node is its host: `Node` and `Node.Address` are both the host, so instances
on one host share a node, as services on one Consul agent do. Nodes have no
metadata and no node checks (no `serfHealth`); an instance's checks are the
ones `checks.instance_checks` gives. No field shows a time, so a heartbeat
that changes nothing else leaves every Consul body cached.
"""

from __future__ import annotations

from .consul_checks import Check, instance_checks
from .instance import Instance
from .render import encode

_WEIGHTS = {"Passing": 1, "Warning": 1}


def _node(instance: Instance, datacenter: str) -> dict[str, object]:
    host = instance.host
    return {
        "ID": "",
        "Node": host,
        "Address": host,
        "Datacenter": datacenter,
        "TaggedAddresses": {"lan": host, "wan": host},
        "Meta": {},
    }


def _check(instance: Instance, check: Check) -> dict[str, object]:
    return {
        "Node": instance.host,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": instance.instance_id,
        "ServiceName": instance.service_name,
        "ServiceTags": list(instance.tags),
        "Type": check.type,
    }


def checks_json(instance: Instance, status: str | None = None) -> list[bytes]:
    """The instance's checks, each encoded; `status` keeps only the checks in that state."""
    return [
        encode(_check(instance, check))
        for check in instance_checks(instance)
        if status is None or check.status == status
    ]


def health_entry(instance: Instance, datacenter: str) -> bytes:
    """`/v1/health/service/<name>`'s entry: `{Node, Service, Checks}`."""
    service = {
        "ID": instance.instance_id,
        "Service": instance.service_name,
        "Tags": list(instance.tags),
        "Address": instance.host,
        "Meta": instance.metadata,
        "Port": instance.port,
        "Weights": _WEIGHTS,
        "EnableTagOverride": False,
        "Datacenter": datacenter,
    }
    head = encode({"Node": _node(instance, datacenter), "Service": service})
    return head[:-1] + b',"Checks":[' + b",".join(checks_json(instance)) + b"]}"


def catalog_entry(instance: Instance, datacenter: str) -> bytes:
    """`/v1/catalog/service/<name>`'s entry: the node's and the service's fields, flat."""
    host = instance.host
    return encode(
        {
            "ID": "",
            "Node": host,
            "Address": host,
            "Datacenter": datacenter,
            "TaggedAddresses": {"lan": host, "wan": host},
            "NodeMeta": {},
            "ServiceKind": "",
            "ServiceID": instance.instance_id,
            "ServiceName": instance.service_name,
            "ServiceTags": list(instance.tags),
            "ServiceAddress": host,
            "ServiceWeights": _WEIGHTS,
            "ServiceMeta": instance.metadata,
            "ServicePort": instance.port,
            "ServiceEnableTagOverride": False,
        }
    )
