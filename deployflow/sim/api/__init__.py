"""The simulator's Kubernetes REST API: the HTTP layer kubectl and the official client talk to.

Routes follow the apiserver's: discovery (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`), `/version`,
`/openapi/v3`, and per resource `/api/v1/namespaces/<ns>/<plural>[/<name>[/<subresource>]]` with list, watch,
create, update, the four patch types, delete with cascade, and the status, scale, log and service-proxy
subresources. Errors are `Status` bodies with the codes a real apiserver uses (404, 409, 410, 422...).

Why not kmock (0.8, the Kubernetes API emulator by kopf's author) as a base, checked against its source:
its `KubernetesEmulator` is built for scripting expected requests and answers in operator unit tests, and its
object tracking does not have the semantics our activities depend on:
- no resourceVersions: lists answer `resourceVersion: "..."`, objects get none, so there is no 409 Conflict on a
  stale update and no watch from a resourceVersion (a watch always replays every object as ADDED, then follows
  live events; no 410 Gone, no bookmarks, no `timeoutSeconds`, which it marks as a TODO);
- every PUT and PATCH is the same recursive dict merge: no JSON patch, no strategic merge (no list merge keys),
  no server-side apply or managedFields, no `dryRun`;
- no label or field selectors (only name and namespace filters), no owner-reference cascade, no status or scale
  subresources, no validation or 422 bodies, and creating in a missing namespace succeeds;
- no OpenAPI documents, so `kubectl apply` cannot validate or find merge keys against it;
- no controllers, traffic or service proxy.
What it would contribute (aiohttp routing, discovery lists, JSON patch via the `jsonpatch` package) is the small
part; the store, watch and patch semantics would have been written beside it anyway. So this package uses aiohttp
directly and `jsonpatch` for RFC 6902.

One module per concern: `server` (routing, faults, the request counts), `discovery` (discovery and OpenAPI),
`crud` (list, create, replace, delete), `filters` (label and field selectors), `validation` (validation,
defaults, pruning), `watch`, `patching` (the patch types and server-side apply), `subresources` (scale, log,
proxy), `tables` (server-side printing), `errors` and `http` (Status bodies, request and response plumbing).
"""

from deployflow.sim.api.server import ApiServer

__all__ = ["ApiServer"]
