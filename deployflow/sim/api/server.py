"""The API server: one aiohttp route that answers every path as the apiserver would, dispatching to discovery,
CRUD, watch, patch and subresource handlers, with injected faults and failures answered as `Status` bodies."""

from __future__ import annotations

import asyncio
import json
import logging

import yaml
from aiohttp import web

from deployflow.sim import resources as R
from deployflow.sim.api import discovery
from deployflow.sim.api.accounting import RequestCounts, is_counted
from deployflow.sim.api.errors import error_response
from deployflow.sim.api.http import json_response
from deployflow.sim.api.patching import Patching
from deployflow.sim.api.paths import NOT_FOUND, Target, locate
from deployflow.sim.api.subresources import TrafficLike, pod_log, scale, service_proxy
from deployflow.sim.api.watch import watch
from deployflow.sim.faults import Faults
from deployflow.sim.store import Resource, Store, StoreError

log = logging.getLogger(__name__)


class ApiServer(Patching):
    """Routes Kubernetes REST requests onto the store."""

    def __init__(
        self,
        store: Store,
        faults: Faults,
        traffic: TrafficLike | None = None,
        served: tuple[Resource, ...] = R.ALL,
    ) -> None:
        super().__init__(store, served)
        self.faults = faults
        self.traffic = traffic
        self.counts = RequestCounts()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        app.on_response_prepare.append(self._count)
        return app

    # -- plumbing --

    @property
    def requests(self) -> int:
        """API requests served so far (all clients)."""
        return self.counts.total()

    async def _count(self, request: web.Request, response: web.StreamResponse) -> None:
        # Counted when the answer starts rather than when the handler returns: a watch is served for minutes.
        if not is_counted(request):
            return
        try:
            target = locate(self.served, request)
        except StoreError:  # a 404 for an unknown resource is still a request
            target = None
        self.counts.count(request, response.status, target)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except StoreError as e:
            return error_response(e)
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
            return error_response(StoreError(400, "BadRequest", f"the body of the request was in an unknown "
                                             f"format: {e}"))
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            raise
        except Exception as e:  # an unexpected bug must still answer like an apiserver, and be logged
            log.exception("simulator API: %s %s failed", request.method, request.path_qs)
            return error_response(StoreError(500, "InternalError", f"Internal error occurred: {e!r}"))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        target = locate(self.served, request)
        if target is not None:
            return await self.resource_request(request, target)
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/metrics", "/openapi/v3", "/version"]})
        head = parts[0]
        if head == "version":
            return json_response(discovery.KUBE_VERSION)
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if head == "metrics":
            text = (self.traffic.metrics_text() if self.traffic else "") + self.counts.metrics_text()
            return web.Response(text=text, content_type="text/plain", charset="utf-8")
        if parts == ["debug", "requests"] and request.method in ("GET", "DELETE"):
            # DELETE answers the counts it clears, so a benchmark reads and restarts them in one request.
            return json_response(self.counts.snapshot(request.query, reset=request.method == "DELETE"))
        if head == "openapi":
            return discovery.openapi(self.served, parts[1:])
        if parts == ["api"]:
            return json_response({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
            })
        if head == "api" and len(parts) == 2:
            return discovery.resource_list(self.served, "", parts[1])
        if parts == ["apis"]:
            return json_response(discovery.group_list(self.served))
        if head == "apis" and len(parts) == 2:
            group = next((g for g in discovery.group_list(self.served)["groups"] if g["name"] == parts[1]), None)
            if group is None:
                raise StoreError(404, "NotFound", NOT_FOUND)
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **group})
        if head == "apis" and len(parts) == 3:
            return discovery.resource_list(self.served, parts[1], parts[2])
        raise StoreError(404, "NotFound", NOT_FOUND)

    async def resource_request(self, request: web.Request, target: Target) -> web.StreamResponse:
        res, namespace, name, sub = target.res, target.namespace, target.name, target.sub
        fault = self.faults.draw(write=request.method not in ("GET", "HEAD"))
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.code is not None:
            reasons = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                       504: "Timeout"}
            raise StoreError(fault.code, reasons.get(fault.code, "InternalError"),
                             f"injected fault: {fault.code} for {request.method} {request.path}")

        method = request.method
        if sub == "proxy":
            return service_proxy(self.store, self.traffic, namespace or "", name or "", list(target.rest))
        if sub == "log":
            return pod_log(self.store, res, namespace, name or "", request)
        if sub == "scale":
            return await scale(self, request, res, namespace, name or "")
        if name is None:
            if method == "GET":
                if target.watching:
                    return await watch(self.store, request, res, namespace)
                return self.list_objects(request, res, namespace)
            if method == "POST":
                return await self.create(request, res, namespace)
            if method == "DELETE":
                return await self.delete_collection(request, res, namespace)
        else:
            if method == "GET":
                return self.get_object(request, res, namespace, name)
            if method == "PUT":
                return await self.replace(request, res, namespace, name, sub)
            if method == "PATCH":
                return await self.patch(request, res, namespace, name, sub)
            if method == "DELETE" and sub is None:
                return await self.delete(request, res, namespace, name)
        raise StoreError(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                         f"resource: {method} {request.path}")
