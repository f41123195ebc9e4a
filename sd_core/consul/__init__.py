"""Consul's read API, spoken by the registry: catalog, health and agent/self.

Renderings of the same core views (docs/integrations.md), I/O-free and cached
per change like our own reads; `HttpApi` routes and authorises them. Modules:
`checks` (status to Consul checks), `shapes` (one instance's JSON), `views`
(bodies, cached), `query` (Consul's query parameters), `routes` (paths, the
405 of Consul's writes, `/v1/agent/self`).
"""

from __future__ import annotations

from .views import ConsulViews

__all__ = ["ConsulViews"]
