"""deploy/: the manifests parse, and the worker's RBAC grants every Kubernetes API call the production code makes.

The calls are found by reading the source (activities/ and deployflow/ without the simulator and the local
tooling): typed client methods (`patch_namespaced_service`), plain requests with a method and a path built from an
f-string or a path helper, watches, and the custom resources the traffic routers update. A new call on a resource
or verb the Role does not grant fails here, before a cluster answers 403 in the middle of a rollout.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jsonpatch
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
CREDENTIALS = DEPLOY / "kubernetes" / "overlays" / "credentials"
SCANNED = [ROOT / "activities", ROOT / "deployflow"]
NOT_WORKER_CODE = {"sim", "cli.py", "dev.py", "demo.py", "prometheus.py"}  # never run by the worker against a cluster

# Kinds as the typed client spells them -> (API group, plural).
KINDS = {
    "pod": ("", "pods"), "service": ("", "services"), "secret": ("", "secrets"), "config_map": ("", "configmaps"),
    "endpoints": ("", "endpoints"), "event": ("", "events"), "deployment": ("apps", "deployments"),
    "replica_set": ("apps", "replicasets"), "stateful_set": ("apps", "statefulsets"), "job": ("batch", "jobs"),
    "ingress": ("networking.k8s.io", "ingresses"),
}
TYPED_VERBS = {"read": "get", "list": "list", "create": "create", "patch": "patch", "replace": "update",
               "delete": "delete", "get": "get"}
HTTP_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
HELPER_VERBS = {"get": "GET", "get_or_none": "GET", "create": "POST", "delete": "DELETE", "merge_patch": "PATCH",
                "replace": "PUT", "update": "PUT"}
PATH = re.compile(r"/apis?/(?:(?P<group>[a-z0-9.-]+)/)?v[0-9a-z]+/namespaces/\{[^}]*\}/(?P<plural>[a-z]+)"
                  r"(?P<rest>[^\"']*)")


# Resources granted only by name, and only in an overlay: a rule on them without resourceNames (or with an empty
# list, which Kubernetes reads as "all names") would let any workflow read every Secret in a bound namespace.
BY_NAME_ONLY = {("", "secrets")}
NAMEABLE_VERBS = {"get", "update", "patch", "delete"}

NAMESPACE_PATH = re.compile(r"/api/v1/namespaces/\{[^}]*\}[\"']")


@dataclass(frozen=True)
class Need:
    group: str
    resource: str  # plural, or plural/subresource
    verb: str
    where: str


def worker_sources() -> list[Path]:
    files = []
    for base in SCANNED:
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).parts
            if base.name == "deployflow" and rel[0] in NOT_WORKER_CODE:
                continue
            files.append(path)
    return files


PLURALS = {plural: group for group, plural in KINDS.values()} | {"controllerrevisions": "apps"}
PATH_HELPERS = {"core_path": "", "apps_path": "apps", "batch_path": "batch"}
Target = tuple[str, str, bool]  # (API group, resource, names one object)


def _call_name(call: ast.Call) -> str:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _helpers(tree: ast.Module) -> dict[str, list[tuple[str, str]]]:
    """Local functions (and methods such as `path()`) that build an API path: name -> [(group, plural)]."""
    helpers: dict[str, list[tuple[str, str]]] = {}
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        if fn.name in PATH_HELPERS:
            continue
        for ret in (n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None):
            m = PATH.search(ast.unparse(ret.value))
            if m:
                helpers[fn.name] = [(m.group("group") or "", m.group("plural"))]
                continue
            for call in (n for n in ast.walk(ret.value) if isinstance(n, ast.Call)):
                group = PATH_HELPERS.get(_call_name(call))
                if group is None:
                    continue
                if _call_name(call) == "batch_path":
                    helpers[fn.name] = [("batch", "jobs")]
                    continue
                # The plural may be computed: every known plural spelled in the function is a candidate.
                consts = {c.value for c in ast.walk(fn) if isinstance(c, ast.Constant) and c.value in PLURALS}
                helpers[fn.name] = [(group, plural) for plural in sorted(consts)]
    return helpers


def _paths_of(node: ast.AST, helpers: dict[str, list[tuple[str, str]]], assigns: dict[str, ast.AST]) -> list[Target]:
    """The API paths an expression can be, or [] if it is not an API path."""
    if isinstance(node, ast.Name) and node.id in assigns:
        return _paths_of(assigns[node.id], helpers, assigns)
    if isinstance(node, ast.BinOp):  # base + "/log", core_path(...) + "/proxy" + path
        right = ast.unparse(node.right)
        out = []
        for group, resource, is_item in _paths_of(node.left, helpers, assigns):
            sub = next((s for s in ("log", "proxy", "scale", "status") if f"/{s}" in right), None)
            out.append((group, resource.split("/")[0] + f"/{sub}", True) if sub else (group, resource, is_item))
        return out
    if isinstance(node, ast.Call):
        name = _call_name(node)
        args = node.args
        literal = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if name == "core_path" and literal:
            return [("", literal[0], len(args) > 2)]
        if name == "apps_path" and literal:
            return [("apps", literal[0], len(args) > 2)]
        if name == "batch_path":
            return [("batch", "jobs", len(args) > 1)]
        if name in helpers:
            item = len(args) > 1 or isinstance(node.func, ast.Attribute)  # `w.path()` names its object
            return [(group, plural, item) for group, plural in helpers[name]]
        return []
    match = PATH.search(ast.unparse(node))
    if not match:
        # The Namespace object itself (`/api/v1/namespaces/{name}`), read to check a target namespace exists.
        return [("", "namespaces", True)] if NAMESPACE_PATH.search(ast.unparse(node)) else []
    rest = match.group("rest")
    sub = next((s for s in ("log", "proxy", "scale", "status") if f"/{s}" in rest), None)
    resource = match.group("plural") + (f"/{sub}" if sub else "")
    return [(match.group("group") or "", resource, bool(rest.strip("/")) or sub is not None)]


def _verbs(method: str, resource: str, is_item: bool) -> list[str]:
    if method == "WATCH":
        return ["list", "watch"]
    if method == "GET":
        return ["get" if is_item else "list"]
    if method == "ANY":  # the method is a parameter (HTTP hooks through the service proxy)
        return ["get", "create"] if resource.endswith("/proxy") else ["get"]
    return [HTTP_VERBS[method]]


def _kube_method(call: ast.Call) -> tuple[str, int] | None:
    """(HTTP method, index of the path argument) of a request through deployflow.kube or hooks.kubeapi."""
    name = _call_name(call)
    owner = ast.unparse(call.func.value) if isinstance(call.func, ast.Attribute) else ""
    if owner not in ("kube", "kubeapi"):
        return None
    if name in ("send", "request", "request_json", "request_raw"):
        consts = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        return next((c for c in consts if c in ("GET", *HTTP_VERBS)), "ANY"), 2
    if name in HELPER_VERBS:
        return HELPER_VERBS[name], 1
    if owner == "kube" and name == "watch_events":
        return "WATCH", 1
    return None


def scan(path: Path) -> tuple[set[Need], list[str]]:
    tree = ast.parse(path.read_text())
    where = str(path.relative_to(ROOT))
    needs: set[Need] = set()
    unresolved: list[str] = []
    helpers = _helpers(tree)
    # Custom resources the routers manage: `GROUP, VERSION, PLURAL = "...", "...", "..."`.
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            names = [getattr(t, "id", "") for t in getattr(node.targets[0], "elts", [])]
            if names == ["GROUP", "VERSION", "PLURAL"]:
                group, _version, plural = (c.value for c in node.value.elts)  # type: ignore[attr-defined]
                for verb in ("get", "create", "update"):
                    needs.add(Need(group, plural, verb, where))
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    # Forwarders: local functions that pass one of their parameters as the path of a request (`_list(c, path)`).
    forwarders: dict[str, tuple[str, int]] = {}
    for fn in functions:
        params = [a.arg for a in fn.args.args]
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
            kube_call = _kube_method(call)
            if kube_call and len(call.args) > kube_call[1]:
                arg = call.args[kube_call[1]]
                if isinstance(arg, ast.Name) and arg.id in params:
                    forwarders[fn.name] = (kube_call[0], params.index(arg.id))
    owner: dict[ast.Call, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for fn in functions:  # breadth-first: an inner function overrides its outer one
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                owner[node] = fn
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        fn = owner.get(call)
        params = {a.arg for a in fn.args.args} if fn else set()
        assigns = {t.id: n.value for n in ast.walk(fn or tree) if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
        name = _call_name(call)
        if name == "service_proxy_path":
            # Probes reach an app through the Service proxy with the method their spec names (GET, or POST).
            for verb in _verbs("ANY", "services/proxy", True):
                needs.add(Need("", "services/proxy", verb, where))
            continue
        typed = re.fullmatch(r"(read|list|create|patch|replace|delete)_namespaced_([a-z_]+?)"
                             r"(?:_(status|scale|log|proxy_with_path|proxy))?", name)
        if typed:
            verb, kind, sub = typed.groups()
            if kind == "custom_object":
                continue  # covered by the GROUP/PLURAL constants above
            if kind not in KINDS:
                unresolved.append(f"{where}: {name}")
                continue
            group, plural = KINDS[kind]
            resource = plural + (f"/{sub.split('_')[0]}" if sub else "")
            needs.add(Need(group, resource, TYPED_VERBS[verb], where))
            continue
        kube_call = _kube_method(call)
        if kube_call is None and name in forwarders and not isinstance(call.func, ast.Attribute):
            kube_call = forwarders[name]
        if kube_call is None:
            continue
        method, index = kube_call
        candidates = call.args[index:index + 1]
        targets = [t for a in candidates for t in _paths_of(a, helpers, assigns)]
        if not targets:
            if any(isinstance(a, ast.Name) and a.id in params for a in candidates):
                continue  # a forwarder: resolved at its call sites
            unresolved.append(f"{where}:{call.lineno}: {ast.unparse(call)[:100]}")
            continue
        for group, resource, is_item in targets:
            for verb in _verbs(method, resource, is_item):
                needs.add(Need(group, resource, verb, where))
    return needs, sorted(set(unresolved))


def _deployer_role(docs: list[dict]) -> dict:
    roles = [d for d in docs if d and d["kind"] in ("ClusterRole", "Role") and d["metadata"]["name"] ==
             "deployflow-deployer"]
    assert len(roles) == 1, "the manifests define the deployflow-deployer ClusterRole once"
    return roles[0]


def rbac_rules() -> list[dict]:
    """The base Role: what every installation grants."""
    return _deployer_role(list(yaml.safe_load_all((BASE / "rbac.yaml").read_text())))["rules"]


def overlay_rules() -> list[dict]:
    """The Role as overlays/credentials renders it: its JSON patches applied to the base, as kustomize does."""
    kust = yaml.safe_load((CREDENTIALS / "kustomization.yaml").read_text())
    role = _deployer_role(list(yaml.safe_load_all((BASE / "rbac.yaml").read_text())))
    for patch in kust["patches"]:
        assert patch["target"]["name"] == "deployflow-deployer", patch
        role = jsonpatch.apply_patch(role, yaml.safe_load((CREDENTIALS / patch["path"]).read_text()))
    return role["rules"]


def granted(rules: list[dict], need: Need) -> bool:
    """A rule with resourceNames grants only requests that name one object: get, update, patch, delete (a list,
    watch or create is never limited by name, so such a rule does not grant them)."""
    return any(need.group in r.get("apiGroups", []) and need.resource in r.get("resources", [])
               and need.verb in r.get("verbs", []) and (not r.get("resourceNames") or need.verb in NAMEABLE_VERBS)
               for r in rules)


def _scoped(group: str, resource: str) -> bool:
    return (group, resource) in BY_NAME_ONLY


def test_manifests_parse_and_reference_each_other() -> None:
    objects = {}
    for path in sorted(BASE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert {"apiVersion", "kind"} <= set(doc), f"{path.name}: {doc}"
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    for root in (DEPLOY / "kubernetes", BASE, CREDENTIALS):
        kust = yaml.safe_load((root / "kustomization.yaml").read_text())
        for resource in kust["resources"] + [p["path"] for p in kust.get("patches", [])]:
            assert (root / resource).exists(), f"{root}: {resource}"
    worker = objects[("Deployment", "deployflow-worker")]
    pod = worker["spec"]["template"]["spec"]
    assert ("ServiceAccount", pod["serviceAccountName"]) in objects
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert worker["spec"]["selector"]["matchLabels"].items() <= worker["spec"]["template"]["metadata"][
        "labels"].items()
    env_from = pod["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    assert ("ConfigMap", env_from) in objects
    assert "TEMPORAL_ADDRESS" in objects[("ConfigMap", env_from)]["data"]
    # No secret material in the manifests: credentials come from Secrets created out of band.
    text = "\n".join(p.read_text() for p in (DEPLOY / "kubernetes").rglob("*.yaml"))
    assert "kind: Secret\n" not in text
    binding = objects[("RoleBinding", "deployflow-deployer")]
    assert binding["roleRef"]["name"] == "deployflow-deployer"
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]


def scan_all() -> tuple[set[Need], list[str]]:
    """Every call in the worker's code. Parsed in a thread of its own: CPython 3.11's parser keeps a per-thread
    recursion count that an earlier RecursionError elsewhere in the test process can leave off, which makes
    ast.parse fail with "AST constructor recursion depth mismatch"."""
    from concurrent.futures import ThreadPoolExecutor

    def run() -> tuple[set[Need], list[str]]:
        needs: set[Need] = set()
        unresolved: list[str] = []
        for path in worker_sources():
            found, unknown = scan(path)
            needs |= found
            unresolved += unknown
        return needs, unresolved

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def test_rbac_grants_every_api_call_the_worker_makes() -> None:
    """Every call is granted by the base Role, except reads of credential Secrets, granted by name in the overlay."""
    base, named = rbac_rules(), overlay_rules()
    needs, unresolved = scan_all()
    assert not unresolved, "API calls the scan cannot attribute to a resource:\n" + "\n".join(unresolved)
    assert len({(n.resource, n.verb) for n in needs}) >= 8, needs  # the scan really found the activities' calls
    assert any(_scoped(n.group, n.resource) for n in needs), "the scan no longer sees the credential Secret reads"
    missing = sorted({f"{n.group or 'core'} {n.resource} {n.verb} (used in {n.where})" for n in needs
                      if not granted(named if _scoped(n.group, n.resource) else base, n)})
    assert not missing, "deploy/kubernetes does not grant:\n" + "\n".join(missing)


def test_rbac_grants_nothing_unused() -> None:
    """Least privilege: every (resource, verb) in the Role, with or without the overlay, is used by some call."""
    needs = scan_all()[0]
    used = {(n.group, n.resource, n.verb) for n in needs}
    extra = sorted({f"{g or 'core'} {res} {verb}" for rule in overlay_rules() for g in rule["apiGroups"]
                    for res in rule["resources"] for verb in rule["verbs"] if (g, res, verb) not in used})
    if extra:
        pytest.fail("deploy/kubernetes grants what no code uses (remove it):\n" + "\n".join(extra))


def test_secrets_are_readable_only_by_name_and_only_through_the_overlay() -> None:
    for rule in rbac_rules():
        assert not any(_scoped(g, r) for g in rule["apiGroups"] for r in rule["resources"]), (
            f"base/rbac.yaml grants {rule}: Secrets are granted by name in overlays/credentials only")
    for rule in overlay_rules():
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
        # An empty resourceNames list means every name: refuse it outright.
        assert rule.get("resourceNames", None) != [], f"resourceNames: [] grants every object: {rule}"
        if any(_scoped(g, r) for g in rule["apiGroups"] for r in rule["resources"]):
            assert rule.get("resourceNames"), f"a Secret rule without resourceNames reads every Secret: {rule}"
            assert set(rule["verbs"]) <= NAMEABLE_VERBS, f"these verbs ignore resourceNames: {rule}"
    # Everything the worker does with a Secret is a read by name, the one request resourceNames can limit.
    verbs = {n.verb for n in scan_all()[0] if _scoped(n.group, n.resource)}
    assert verbs == {"get"}, verbs


def test_granted_understands_resource_names() -> None:
    named = [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get", "list"]}]
    assert granted(named, Need("", "secrets", "get", "x"))
    assert not granted(named, Need("", "secrets", "list", "x"))  # a list is never limited by name
    assert not granted(named, Need("", "configmaps", "get", "x"))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_overlay_renders_with_kustomize_as_the_test_reads_it() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(CREDENTIALS)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    assert _deployer_role(list(yaml.safe_load_all(rendered.stdout)))["rules"] == overlay_rules()
    plain = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert _deployer_role(list(yaml.safe_load_all(plain.stdout)))["rules"] == rbac_rules()
