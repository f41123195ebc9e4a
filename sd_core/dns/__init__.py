"""The DNS interface's decision (what to answer), without sockets: see `answerer`.

The wire format is dnspython's; the frontends own the sockets
(`frontends/runtime/dns_server.py` and each loop's `dns` module).
"""

from .answerer import DnsAnswerer
from .config import DEFAULT_DOMAIN, DnsConfig

__all__ = ["DEFAULT_DOMAIN", "DnsAnswerer", "DnsConfig"]
