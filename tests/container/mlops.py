"""Runs the weekly retraining CronJob (servingruntime-manifests/mlops/retrain-cronjob.yaml) as far as a machine
without a cluster can: its containers, in the Ferroserve image, in the order the kubelet runs them (init containers
one after the other, each only if the one before exited 0, then the container), with the pod's and each container's
securityContext, env and limits, its ConfigMap (the gate) and an emptyDir mounted as files, against a real Prometheus
and a model folder on a host folder where the PVC would be.

1. A real Prometheus (Debian's `prometheus`) holds eight days of the platform's five metrics, backfilled with
   `promtool tsdb create-blocks-from openmetrics`; the CronJob's Prometheus URL is pointed at it (host network).
   The labelled hold-out the Job reads from the PVC is made the same way (`dataset` in the image), labelled normal.
2. Gate passes (the manifest's own gate.json): `dataset` writes the 45-feature CSV, `train` publishes the next
   version (validation_status passed) as a 10 % canary beside the version serving today (serving.json on the PVC).
3. Gate fails (gate.json asks for a model under 1 kB): `train` exits 3, no version is published (the refused one is
   kept aside under `_rejected/`, which the server ignores), serving.json is unchanged.

    python3 tests/container/mlops.py --image IMAGE [--oci-runtime runc] [--ulimit nofile=1024:1024 ...]

Every wait is bounded; it stops the Prometheus it started (by PID) and removes its temporary folder.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from e2e import ROOT, CheckFailed, Podman, check, container_options, free_port, image_user

CRONJOB = ROOT / "servingruntime-manifests" / "mlops" / "retrain-cronjob.yaml"
MODEL = "anomaly-detector"
MOUNT = "/mnt/models"
MINUTE = 60
# Where in its minute each sample is stamped. A real scrape lands at a millisecond offset of its own, never on the
# whole second a `now` resolves to; samples stamped on the minute would sit exactly on the edge of a `[5m]` window
# whenever the Job happened to start on a whole minute, so that run's features (a sample more in every window) would
# not match the hold-out's, and the gate's verdict would depend on the second the Job started.
SCRAPE_OFFSET = 17.381


def cronjob() -> dict:
    with CRONJOB.open(encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "CronJob"]
    if len(docs) != 1:
        raise CheckFailed(f"{CRONJOB.name}: expected one CronJob, found {len(docs)}")
    return docs[0]


def series(now: int, days: int = 8) -> str:
    """OpenMetrics text of the platform's five metrics, one sample a minute for `days` days up to `now`: a daily
    cycle with seeded noise, as a quiet cluster looks (the dataset's arithmetic is checked by ferroserve-train's own
    tests against pandas; here the point is that the Job runs end to end on real Prometheus data)."""
    rng = random.Random(7)
    start = now - days * 86400
    lines = {k: [] for k in ("cpu", "avail", "total", "pod_cpu", "pod_mem", "restarts")}
    idle = 0.0
    busy = 0.0
    restarts = 0
    for t in range(start, now, MINUTE):
        ts = f"{t + SCRAPE_OFFSET:.3f}"
        day = math.sin(2 * math.pi * (t % 86400) / 86400)
        util = min(max(0.45 + 0.2 * day + rng.gauss(0, 0.08), 0.01), 0.99)
        idle += (1 - util) * MINUTE               # one CPU
        busy += max(0.8 + 0.3 * day + rng.gauss(0, 0.15), 0.0) * MINUTE
        if t < start + 86400 and rng.random() < 0.002:
            restarts += 1                         # a few restarts on the first day, none since
        lines["cpu"].append(f'node_cpu_seconds_total{{cpu="0",mode="idle"}} {idle:.3f} {ts}')
        avail = 8e9 * (0.5 - 0.15 * day + rng.gauss(0, 0.03))
        lines["avail"].append(f"node_memory_MemAvailable_bytes {int(avail)} {ts}")
        lines["total"].append(f"node_memory_MemTotal_bytes {int(16e9)} {ts}")
        lines["pod_cpu"].append(f'container_cpu_usage_seconds_total{{pod="app-0"}} {busy:.3f} {ts}')
        mem = 5e8 + 1.5e8 * day + rng.gauss(0, 3e7)
        lines["pod_mem"].append(f'container_memory_working_set_bytes{{pod="app-0"}} {int(mem)} {ts}')
        lines["restarts"].append(f'kube_pod_container_status_restarts_total{{pod="app-0"}} {restarts} {ts}')
    types = {"cpu": ("node_cpu_seconds_total", "counter"), "avail": ("node_memory_MemAvailable_bytes", "gauge"),
             "total": ("node_memory_MemTotal_bytes", "gauge"),
             "pod_cpu": ("container_cpu_usage_seconds_total", "counter"),
             "pod_mem": ("container_memory_working_set_bytes", "gauge"),
             "restarts": ("kube_pod_container_status_restarts_total", "counter")}
    out = []
    for key, samples in lines.items():
        name, kind = types[key]
        out.append(f"# TYPE {name} {kind}")
        if kind == "counter":
            # OpenMetrics names a counter's samples `<name>_total`; the family is the name without it.
            out[-1] = f"# TYPE {name.removesuffix('_total')} counter"
        out.extend(samples)
    out.append("# EOF")
    return "\n".join(out) + "\n"


class Prometheus:
    """A real Prometheus on 127.0.0.1 over a backfilled TSDB; stopped by PID."""

    def __init__(self, tmp: Path, now: int):
        self.dir = tmp / "prometheus"
        (self.dir / "data").mkdir(parents=True)
        om = self.dir / "series.om"
        om.write_text(series(now), encoding="utf-8")
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(self.dir / "data")],
                       check=True, capture_output=True, timeout=300)
        config = self.dir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n", encoding="utf-8")
        self.port = free_port()
        self.log = (self.dir / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=30d"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise CheckFailed(f"Prometheus never became ready: {(self.dir / 'prometheus.log').read_text()[-800:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def run_pod(podman: Podman, image: str, job: dict, volumes: dict[str, Path], prometheus: str, ulimits: list[str],
            name: str) -> list[tuple[str, int, str]]:
    """Runs the Job's pod as the kubelet would (init containers in order, then the containers); returns each
    container's (name, exit code, output), stopping after the first that fails, as the kubelet does."""
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod_sc = pod.get("securityContext") or {}
    user = image_user(podman, image)
    ran = []
    for c in [*(pod.get("initContainers") or []), *pod["containers"]]:
        c = dict(c)
        c["securityContext"] = {**pod_sc, **(c.get("securityContext") or {})}
        opts = container_options(c, user)
        for m in c.get("volumeMounts") or []:
            opts += ["--volume", f"{volumes[m['name']]}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
        if c.get("command"):
            opts += ["--entrypoint", json.dumps(c["command"])]
        args = [a.replace(prometheus_url(pod), prometheus) for a in c.get("args") or []]
        argv = ["run", "--rm", "--name", f"{name}-{c['name']}", "--network", "host", *ulimits, *opts, image, *args]
        print(f"  podman {' '.join(argv)}")
        proc = subprocess.run(podman.base + argv, capture_output=True, text=True, timeout=900, check=False)
        out = (proc.stdout + proc.stderr).strip()
        print("    " + "\n    ".join(out.splitlines()[-12:]))
        ran.append((c["name"], proc.returncode, out))
        if proc.returncode != 0:
            break
    return ran


def prometheus_url(pod: dict) -> str:
    for c in pod.get("initContainers") or []:
        args = c.get("args") or []
        if "--prometheus" in args:
            return args[args.index("--prometheus") + 1]
    raise CheckFailed(f"{CRONJOB.name}: no container passes --prometheus")


def versions(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if p.is_dir() and p.name[:1] not in "._")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--oci-runtime", default=None)
    ap.add_argument("--ulimit", action="append", default=[])
    args = ap.parse_args()
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        raise CheckFailed("prometheus and promtool are needed (Debian's `prometheus` package)")
    podman = Podman(args.oci_runtime)
    ulimits = [x for u in args.ulimit for x in ("--ulimit", u)]
    job = cronjob()
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    claim = {v["name"]: v for v in pod["volumes"]}
    tmp = Path(tempfile.mkdtemp(prefix="ferroserve-mlops-"))
    prometheus = None
    try:
        prometheus = Prometheus(tmp, int(time.time()) // MINUTE * MINUTE)
        print(f"Prometheus {prometheus.url}: eight days of the five metrics backfilled")
        pvc = tmp / "pvc"
        models = pvc / MODEL
        models.mkdir(parents=True)
        volumes = {}
        for name, v in claim.items():
            volumes[name] = tmp / f"volume-{name}"
            if "persistentVolumeClaim" in v:
                volumes[name] = pvc
            elif "emptyDir" in v:
                volumes[name].mkdir()
            elif "configMap" in v:
                volumes[name].mkdir()
                for key, text in config_map(v["configMap"]["name"])["data"].items():
                    (volumes[name] / key).write_text(text, encoding="utf-8")
            else:
                raise CheckFailed(f"volume {name}: only PVCs, emptyDirs and ConfigMaps are handled by this test")
        gate_dir = next(volumes[n] for n, v in claim.items() if "configMap" in v)
        holdout = holdout_path(pod)
        make_holdout(podman, args.image, prometheus.url, pvc, holdout, ulimits)
        # The pod's user owns what it writes, as on a PVC with fsGroup or a folder made for it.
        subprocess.run(["chown", "-R", "65532:65532", str(tmp)], check=True)
        name = f"ferroserve-mlops-{tmp.name[-6:]}"
        every = [(c["name"], 0) for c in [*pod["initContainers"], *pod["containers"]]]

        print("first run, gate passes (the manifest's gate.json): the model's first version serves alone")
        ran = run_pod(podman, args.image, job, volumes, prometheus.url, ulimits, name)
        check([(n, c) for n, c, _ in ran] == every, f"every container exited 0: {[(n, c) for n, c, _ in ran]}")
        check(versions(models) == ["v1"], f"v1 published: {versions(models)}")
        meta = json.loads((models / "v1" / "metadata.json").read_text())
        check(meta.get("validation_status") == "passed", f"v1/metadata.json validation_status: "
              f"{meta.get('validation_status')}; checks {meta.get('validation', {}).get('checks')}")
        check(meta.get("training_data", {}).get("source", {}).get("prometheus_url") == prometheus.url,
              "v1/metadata.json: training_data.source names the Prometheus it was built from")
        check(not (models / "serving.json").exists(), "no serving.json: the only version serves")

        print("second run, gate passes: v2 is published as a 10 % canary beside v1")
        ran = run_pod(podman, args.image, job, volumes, prometheus.url, ulimits, name)
        check([(n, c) for n, c, _ in ran] == every, f"every container exited 0: {[(n, c) for n, c, _ in ran]}")
        check(versions(models) == ["v1", "v2"], f"v2 published: {versions(models)}")
        serving = json.loads((models / "serving.json").read_text())
        check(serving == {"default": "v1", "canary": {"version": "v2", "percent": 10}}, f"serving.json: {serving}")

        print("gate fails (gate.json asks for a model under 1 kB):")
        (gate_dir / "gate.json").write_text('{"max_size_mb": 0.001}\n', encoding="utf-8")
        serving_before = (models / "serving.json").read_text()
        before = versions(models)
        ran = run_pod(podman, args.image, job, volumes, prometheus.url, ulimits, name)
        codes = [(n, c) for n, c, _ in ran]
        check(codes == [("dataset", 0), ("train", GATE_FAILED)], f"train exits {GATE_FAILED} (gate failed): {codes}")
        check(versions(models) == before, f"no version published: {versions(models)}")
        aside = [p.name for p in models.iterdir() if p.is_dir() and p.name[:1] in "._"]
        check(aside == ["_rejected"] and any((models / "_rejected").iterdir()),
              f"the refused version is kept aside where the server does not look: {aside}")
        check((models / "serving.json").read_text() == serving_before, "serving.json unchanged")
        print("PASSED: the retraining CronJob ran in the image against a real Prometheus")
        return 0
    finally:
        if prometheus:
            prometheus.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ferroserve-train's exit code for a version the gate refused (docs/mlops.md).
GATE_FAILED = 3


def config_map(name: str) -> dict:
    with CRONJOB.open(encoding="utf-8") as f:
        for d in yaml.safe_load_all(f):
            if d and d.get("kind") == "ConfigMap" and d["metadata"]["name"] == name:
                return d
    raise CheckFailed(f"{CRONJOB.name}: no ConfigMap {name}")


def holdout_path(pod: dict) -> str:
    args = next(c for c in pod["containers"] if c["name"] == "train")["args"]
    return args[args.index("--holdout") + 1]


def make_holdout(podman: Podman, image: str, prometheus: str, pvc: Path, holdout: str, ulimits: list[str]) -> None:
    """The labelled hold-out the Job expects on the PVC: a day of the same quiet cluster through `dataset` in the
    image, every row labelled normal (0)."""
    inside = Path(holdout)
    if not inside.is_relative_to(MOUNT):
        raise CheckFailed(f"--holdout {holdout} is not on the PVC mounted at {MOUNT}")
    host = pvc / inside.relative_to(MOUNT)
    host.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chmod", "0777", str(host.parent)], check=True)
    argv = ["run", "--rm", "--network", "host", *ulimits, "--volume", f"{host.parent}:/out",
            "--entrypoint", '["ferroserve-train"]', image, "dataset", "--prometheus", prometheus,
            "--start", "now-4d", "--end", "now-3d", "--out", f"/out/{host.name}"]
    proc = subprocess.run(podman.base + argv, capture_output=True, text=True, timeout=300, check=False)
    check(proc.returncode == 0, f"the hold-out's features from Prometheus: {(proc.stdout + proc.stderr).strip()}")
    lines = host.read_text(encoding="utf-8").splitlines()
    host.write_text("\n".join([lines[0] + ",label"] + [line + ",0" for line in lines[1:]]) + "\n", encoding="utf-8")
    for p in host.parent.glob("*.provenance.json"):
        p.unlink()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
