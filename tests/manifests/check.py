"""Checks every Kubernetes manifest of the repository against Kubernetes' own schemas, strictly.

Every YAML document under servingruntime-manifests/ whose kind is a built-in Kubernetes kind (Job, CronJob,
ServiceAccount, Role, RoleBinding, ...) is validated with kubernetes-validate (the API's OpenAPI schemas, strict:
an unknown field is an error, as `kubectl apply --validate=strict` would say) against the oldest and the newest
Kubernetes release named below. A Tekton Task's steps are validated as the Containers Tekton turns them into
(`computeResources` is a Container's `resources`), inside a Pod. KServe's kinds are validated against KServe's CRDs by
`cargo test -p ferroserve-it -- --ignored manifests_validate_against_kserve_crds`; the kinds left (the Prometheus
Operator's, Tekton Triggers') are listed as not checked, so the coverage is visible.

    python3 tests/manifests/check.py      (needs requirements.txt: tests/manifests/check.sh makes the virtualenv)

Exits 1 on the first file with an error (after listing every error found), 0 when everything checked passed.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "servingruntime-manifests"
# OpenShift 4.16 runs Kubernetes 1.29; the newest release kubernetes-validate knows.
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
BUILT_IN_GROUPS = {"v1", "batch/v1", "apps/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1",
                   "policy/v1", "autoscaling/v2"}
CHECKED_ELSEWHERE = {"serving.kserve.io/v1beta1", "serving.kserve.io/v1alpha1"}


def documents():
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc:
                yield path.relative_to(ROOT), i, doc


def errors_of(doc: dict) -> list[str]:
    out = []
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            out.append(f"Kubernetes {version}: {'.'.join(str(p) for p in e.path)}: {e.message}")
    return out


def tekton_steps_as_pod(task: dict) -> dict:
    """A Pod with the Task's steps as its containers, as Tekton runs them."""
    containers = []
    for step in task["spec"]["steps"]:
        c = dict(step)
        if "computeResources" in c:
            c["resources"] = c.pop("computeResources")
        if "script" in c:
            raise ValueError(f"step {c.get('name')}: `script` needs a shell, and the images here have none")
        containers.append(c)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": task["metadata"]["name"]},
            "spec": {"containers": containers}}


def main() -> int:
    checked, unchecked, failures = Counter(), Counter(), []
    for path, i, doc in documents():
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        where = f"{path} (document {i + 1}, {kind} {doc.get('metadata', {}).get('name', '')})"
        if api in BUILT_IN_GROUPS:
            errors = errors_of(doc)
        elif api.startswith("tekton.dev/") and kind == "Task":
            try:
                errors = errors_of(tekton_steps_as_pod(doc))
            except ValueError as e:
                errors = [str(e)]
            declared = {p["name"] for p in doc["spec"].get("params", [])}
            text = yaml.safe_dump(doc["spec"]["steps"])
            errors += [f"$(params.{p}) is not a declared param" for p in
                       {t.split(")")[0] for t in text.split("$(params.")[1:]} - declared]
        elif not api or not kind:
            unchecked[f"(not a Kubernetes object: {path.parent.name}/{path.name})"] += 1
            continue
        else:
            unchecked[f"{api} {kind}" + (" (KServe CRDs: cargo test --ignored)" if api in CHECKED_ELSEWHERE else "")] += 1
            continue
        checked[f"{api} {kind}"] += 1
        if errors:
            failures.append(where + ":\n  " + "\n  ".join(errors))
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    print(f"Kubernetes schemas ({', '.join(VERSIONS)}, strict): {sum(checked.values())} documents checked, "
          f"{len(failures)} failed")
    for k, n in sorted(checked.items()):
        print(f"  checked  {n:2} × {k}")
    for k, n in sorted(unchecked.items()):
        print(f"  NOT checked here {n:2} × {k}")
    if not checked:
        print("FAILED: no document was checked", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
