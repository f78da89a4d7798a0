"""Traffic routers: how a canary's share of traffic is set, one module per router, chosen by name."""

from deployflow.traffic.base import RouterError, TrafficRouter, router_for

__all__ = ["RouterError", "TrafficRouter", "router_for"]
