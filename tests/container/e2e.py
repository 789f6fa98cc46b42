"""Runs the Ferroserve image as KServe runs servingruntime.yaml's container, and checks that it serves.

The container gets what the kubelet would give it from the ServingRuntime: its args (`{{.Name}}` rendered), env,
container port (published on 127.0.0.1 only), resource limits and securityContext (read-only root filesystem with
no tmpfs added, the image's numeric non-root user, every capability dropped, no-new-privileges, the runtime's
default seccomp profile), and the model folder mounted read-only at /mnt/models, as KServe mounts a `pvc://`
storageUri. Then, against that container, over real sockets:

1. start to ready: `podman start` until the first 200 on the YAML's readiness path (`--runs` times, each but the
   last followed by `podman stop -t 30` and exit code 0);
2. liveness, v2 metadata and inference, v1 predict, with the example model's known answers;
3. hot-swap: a new version renamed into the mounted folder on the host side is served;
4. canary: the in-process rollout Job (rollout/in-process/rollout-job.yaml: `ferroserve-train canary` from the same
   image, in a container of its own) writes `serving.json` on the mount; unpinned requests split exactly;
5. the process as the host's /proc sees it: uid/gid 65532, no capabilities, no_new_privs, seccomp; the log
   (stderr) is JSON lines (LOG_FORMAT=json);
6. `podman stop -t 30` (SIGTERM) ends the container with exit code 0.

It prints the figures (image size, start to ready) and exits non-zero on the first failed check. Every wait is
bounded. It removes the container it created (by name) and its temporary folder; the image is the caller's.

    python3 tests/container/e2e.py --image IMAGE [--runs 3] [--oci-runtime runc] [--ulimit nofile=1024:1024 ...]

Needs PyYAML (pinned in requirements.txt beside this file; e2e.sh makes the virtualenv).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_YAML = ROOT / "servingruntime-manifests" / "servingruntime.yaml"
ROLLOUT_JOB = ROOT / "servingruntime-manifests" / "rollout" / "in-process" / "rollout-job.yaml"
EXAMPLE_MODEL = ROOT / "examples" / "models" / "anomaly-detector"
MODEL = "anomaly-detector"
# KServe mounts the model storage here; the ServingRuntime's --model_dir points at it.
MOUNT = "/mnt/models"

# A normal minute and a saturated one (examples/curl.md), and the example versions' answers to them.
ROWS = [[35.0, 59.0, 90.0, 0.005, 0, 185.0], [99.0, 97.0, 2400.0, 0.4, 3, 320.0]]
V2_SCORES = [-0.3921752281245057, -0.8345446431320768]
PREDICT = [1, -1]


class CheckFailed(Exception):
    """A check against the running container failed."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)
    print(f"  ok  {what}")


class Podman:
    """The podman CLI with this machine's global options; every call bounded in time."""

    def __init__(self, oci_runtime: str | None):
        self.base = ["podman"] + (["--runtime", oci_runtime] if oci_runtime else [])

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        proc = subprocess.run(
            self.base + list(args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise CheckFailed(f"podman {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def logs(self, name: str) -> tuple[str, str]:
        """The container's stderr (Ferroserve's log) and stdout (its ready-to-paste curl lines)."""
        proc = subprocess.run(self.base + ["logs", name], capture_output=True, text=True, timeout=30, check=False)
        return proc.stderr, proc.stdout

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.base + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def serving_runtime_container(path: Path) -> dict:
    """The `kserve-container` of the ServingRuntime in `path`."""
    with path.open(encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    runtimes = [d for d in docs if d.get("kind") == "ServingRuntime"]
    if len(runtimes) != 1:
        raise CheckFailed(f"{path.name}: expected one ServingRuntime, found {len(runtimes)}")
    containers = runtimes[0]["spec"]["containers"]
    for c in containers:
        if c.get("name") == "kserve-container":
            return c
    raise CheckFailed(f"{path.name}: no container named kserve-container")


def quantity_bytes(q: str) -> int:
    """A Kubernetes memory quantity (`512Mi`, `1G`, `1048576`) in bytes."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * factor)
    return int(q)


def quantity_cpus(q: str) -> str:
    """A Kubernetes CPU quantity (`2`, `500m`) as podman's --cpus."""
    return str(int(q[:-1]) / 1000) if q.endswith("m") else str(float(q))


def image_user(podman: Podman, image: str) -> str:
    return podman.run("image", "inspect", "--format", "{{.Config.User}}", image).strip()


def container_options(container: dict, user_of_image: str) -> list[str]:
    """podman options for a container spec's securityContext, env and resource limits, as the kubelet applies them."""
    opts: list[str] = []
    sc = container.get("securityContext") or {}
    if sc.get("readOnlyRootFilesystem"):
        # Kubernetes adds no tmpfs; podman's --read-only would mount /tmp, /var/tmp and /run writable.
        opts += ["--read-only", "--read-only-tmpfs=false"]
    uid = sc.get("runAsUser")
    gid = sc.get("runAsGroup")
    if uid is None:
        # The kubelet runs the image's USER, and with runAsNonRoot refuses one that is not a numeric non-zero uid.
        user, _, group = user_of_image.partition(":")
        if sc.get("runAsNonRoot") and not (user.isdigit() and int(user) != 0):
            raise CheckFailed(f"runAsNonRoot: the image's USER {user_of_image!r} is not a numeric non-root uid")
        uid, gid = user, gid if gid is not None else (group or None)
    opts += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
    caps = sc.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        opts += ["--cap-drop", cap]
    for cap in caps.get("add") or []:
        opts += ["--cap-add", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        opts += ["--security-opt", "no-new-privileges"]
    seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        opts += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise CheckFailed(f"seccompProfile {seccomp} is not handled by this test")
    for e in container.get("env") or []:
        if "value" not in e:
            raise CheckFailed(f"env {e.get('name')}: only literal values are handled by this test")
        opts += ["--env", f"{e['name']}={e['value']}"]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        opts += ["--memory", str(quantity_bytes(str(limits["memory"])))]
    if "cpu" in limits:
        opts += ["--cpus", quantity_cpus(str(limits["cpu"]))]
    return opts


def run_options(container: dict, user_of_image: str, host_port: int, models: Path) -> tuple[list[str], str, int]:
    """podman options for the container as the kubelet would run it, its readiness path and container port."""
    opts = container_options(container, user_of_image)
    ports = container.get("ports") or []
    if len(ports) != 1:
        raise CheckFailed(f"expected one container port, found {len(ports)}")
    port = int(ports[0]["containerPort"])
    proto = ports[0].get("protocol", "TCP").lower()
    opts += ["--publish", f"127.0.0.1:{host_port}:{port}/{proto}"]
    opts += ["--volume", f"{models}:{MOUNT}:ro"]
    if container.get("command"):
        opts += ["--entrypoint", json.dumps(container["command"])]
    probe = container["readinessProbe"]["httpGet"]
    if int(probe.get("port", port)) != port:
        raise CheckFailed("the readiness probe is on another port than the container's")
    return opts, probe["path"], port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """Plain HTTP/1.1 to the published port."""

    def __init__(self, port: int):
        self.port = port

    def request(self, method: str, path: str, body: object = None, headers: dict | None = None,
                timeout: float = 10) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            hdrs = {"content-type": "application/json"} if data is not None else {}
            hdrs.update(headers or {})
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: object = None,
             headers: dict | None = None) -> tuple[int, dict, object]:
        status, hdrs, raw = self.request(method, path, body, headers)
        return status, hdrs, json.loads(raw) if raw else None

    def first_200(self, path: str, deadline: float) -> int:
        """Polls `path` every millisecond until it answers 200; the time.time_ns() of that answer."""
        while time.monotonic() < deadline:
            try:
                status, _, _ = self.request("GET", path, timeout=1)
                if status == 200:
                    return time.time_ns()
            except (ConnectionError, http.client.HTTPException, socket.timeout, OSError):
                pass
            time.sleep(0.001)
        raise CheckFailed(f"no 200 on {path} within the deadline")


def v2_infer(client: Client, headers: dict | None = None) -> tuple[int, dict, object]:
    body = {"inputs": [{"name": "input-0", "shape": [2, 6], "datatype": "FP32", "data": ROWS}],
            "outputs": [{"name": "predict"}, {"name": "score_samples"}]}
    return client.json("POST", f"/v2/models/{MODEL}/infer", body, headers)


def outputs(body: dict) -> dict:
    return {o["name"]: o["data"] for o in body["outputs"]}


def wait_until(what: str, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            print(f"  ok  {what}")
            return
        time.sleep(0.1)
    raise CheckFailed(f"{what}: not within {timeout:.0f} s")


def start_to_ready(podman: Podman, name: str, client: Client, probe: str) -> tuple[float, float]:
    """`podman start` to the first 200 on the probe; and the process start (State.StartedAt) to that 200, in ms."""
    t0 = time.time_ns()
    proc = podman.popen("start", name)
    try:
        ready = client.first_200(probe, time.monotonic() + 60)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        raise CheckFailed(f"podman start exited {proc.returncode}: {err.strip()}")
    started = int(podman.run("inspect", "--format", "{{.State.StartedAt.UnixNano}}", name).strip())
    return (ready - t0) / 1e6, (ready - started) / 1e6


def stop(podman: Podman, name: str) -> float:
    """SIGTERM with 30 s of grace, as the kubelet stops a pod; checks the exit code, returns the time taken (ms)."""
    t0 = time.monotonic()
    podman.run("stop", "-t", "30", name, timeout=60)
    took = (time.monotonic() - t0) * 1000
    code = podman.run("inspect", "--format", "{{.State.ExitCode}}", name).strip()
    check(code == "0", f"podman stop -t 30: exit code {code} after {took:.0f} ms")
    return took


def log_start_to_ready(log: str) -> list[float]:
    """Per run of the container, ms from the server's first log line to its "all models ready" line."""
    out, first = [], None
    for line in log.splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        if first is None:
            first = at
        if event.get("message") == "all models ready":
            out.append((at - first).total_seconds() * 1000)
        elif event.get("message") == "server stopped":
            first = None
    return out


def rollout_job(path: Path, models: Path, version: str, percent: str) -> tuple[list[str], list[str]]:
    """podman options and argv for the in-process rollout Job's container, with its --version and --percent set."""
    with path.open(encoding="utf-8") as f:
        job = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    argv = list(c["args"])
    for flag, value in (("--version", version), ("--percent", percent)):
        argv[argv.index(flag) + 1] = value
    # The Job mounts the PVC at /mnt/models and names the model folder below it.
    model_dir = Path(argv[argv.index("--model-dir") + 1])
    mount = c["volumeMounts"][0]["mountPath"]
    if model_dir.parent != Path(mount):
        raise CheckFailed(f"{path.name}: --model-dir {model_dir} is not a folder of the mount {mount}")
    opts = ["--entrypoint", json.dumps(c["command"]), "--volume", f"{models}:{model_dir}"]
    return opts, argv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--runs", type=int, default=3, help="start-to-ready measurements (container restarts)")
    ap.add_argument("--oci-runtime", default=None, help="podman --runtime (e.g. runc)")
    ap.add_argument("--ulimit", action="append", default=[], help="podman --ulimit, repeatable")
    args = ap.parse_args()

    podman = Podman(args.oci_runtime)
    container = serving_runtime_container(RUNTIME_YAML)
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", args.image).strip())
    print(f"image {args.image}: {size / 2**20:.1f} MiB ({size} bytes)")

    name = f"ferroserve-e2e-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="ferroserve-e2e-"))
    created = False
    try:
        models = tmp / MODEL
        shutil.copytree(EXAMPLE_MODEL, models)
        # The container's user reads the mount as "other", as it would a PVC written by another uid.
        for p in [models, *models.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        host_port = free_port()
        opts, probe, port = run_options(container, image_user(podman, args.image), host_port, models)
        cargs = [a.replace("{{.Name}}", MODEL) for a in container.get("args") or []]
        ulimits = [x for u in args.ulimit for x in ("--ulimit", u)]
        print(f"podman create --name {name} {' '.join(ulimits + opts)} {args.image} {' '.join(cargs)}")
        podman.run("create", "--name", name, *ulimits, *opts, args.image, *cargs)
        created = True
        client = Client(host_port)

        print(f"start to ready (readiness probe {probe}, container port {port} on 127.0.0.1:{host_port}):")
        from_start, from_process = [], []
        for run in range(1, args.runs + 1):
            a, b = start_to_ready(podman, name, client, probe)
            from_start.append(a)
            from_process.append(b)
            print(f"  run {run}: podman start -> ready {a:.1f} ms; container process start -> ready {b:.1f} ms")
            if run < args.runs:
                stop(podman, name)

        print("serving:")
        live = container.get("livenessProbe", {}).get("httpGet", {}).get("path", "/v2/health/live")
        status, _, _ = client.request("GET", live)
        check(status == 200, f"liveness {live} answers 200")
        status, _, meta = client.json("GET", f"/v2/models/{MODEL}")
        check(status == 200 and meta["versions"] == ["v2"], f"v2 metadata: versions {meta.get('versions')}")
        status, hdrs, body = v2_infer(client)
        out = outputs(body) if status == 200 else {}
        check(status == 200 and body["model_version"] == "v2" and out["predict"] == PREDICT
              and out["score_samples"] == V2_SCORES, f"v2 infer on v2: predict {out.get('predict')}")
        status, _, body = client.json("POST", f"/v1/models/{MODEL}:predict", {"instances": ROWS})
        check(status == 200 and body == {"predictions": PREDICT}, f"v1 predict: {body}")

        print("hot-swap on the mount (host side):")
        # A new version as ferroserve-train writes one: built under a dot-name (ignored), renamed into place.
        staging = models / ".v3"
        shutil.copytree(models / "v1", staging)
        meta_v1 = json.loads((staging / "metadata.json").read_text(encoding="utf-8"))
        meta_v1["version"] = "v3"
        (staging / "metadata.json").write_text(json.dumps(meta_v1, indent=2), encoding="utf-8")
        os.rename(staging, models / "v3")

        def serves_v3() -> bool:
            s, _, b = v2_infer(client)
            return s == 200 and b["model_version"] == "v3"

        wait_until("v3 (v1's trees) copied onto the mount is served", serves_v3)
        _, _, body = v2_infer(client)
        v3_scores = outputs(body)["score_samples"]
        check(v3_scores != V2_SCORES and outputs(body)["predict"] == PREDICT,
              f"v3 answers with its own trees: score_samples {v3_scores}")

        print("canary: serving.json written on the mount by the rollout Job's container (same image):")
        job_opts, job_argv = rollout_job(ROLLOUT_JOB, models, version="v3", percent="50")
        # The Job runs as the image's user and writes on the PVC: the volume is that user's.
        os.chown(models, 65532, 65532)
        print(f"podman run --rm {' '.join(ulimits + job_opts)} {args.image} {' '.join(job_argv)}")
        said = podman.run("run", "--rm", "--name", f"{name}-rollout", *ulimits, *job_opts, args.image, *job_argv,
                          timeout=120)
        check("serving.json: " in said and "v3" in said, f"ferroserve-train in the image: {said.strip()}")
        written = json.loads((models / "serving.json").read_text(encoding="utf-8"))
        check(written.get("canary") == {"version": "v3", "percent": 50}, f"serving.json on the mount: {written}")

        def both_loaded() -> bool:
            s, _, b = client.json("GET", f"/v2/models/{MODEL}")
            return s == 200 and sorted(b["versions"]) == ["v2", "v3"]

        wait_until("the server loads v2 beside v3", both_loaded)
        seen = {"v2": 0, "v3": 0}
        for _ in range(20):
            status, hdrs, body = v2_infer(client)
            version = body["model_version"]
            expected = V2_SCORES if version == "v2" else v3_scores
            if status != 200 or hdrs.get("x-model-version") != version or outputs(body)["score_samples"] != expected:
                raise CheckFailed(f"canary answer inconsistent: {status} {hdrs.get('x-model-version')} {body}")
            seen[version] += 1
        check(seen == {"v2": 10, "v3": 10}, f"20 unpinned requests at 50 %: {seen}")
        status, hdrs, body = v2_infer(client, {"x-model-version": "v3"})
        check(status == 200 and body["model_version"] == "v3", "x-model-version: v3 pins the canary")

        print("the process:")
        pid = podman.run("inspect", "--format", "{{.State.Pid}}", name).strip()
        status_lines = Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines()
        proc_status = dict(line.split(":", 1) for line in status_lines if ":" in line)
        uids, gids = proc_status["Uid"].split(), proc_status["Gid"].split()
        check(set(uids) == {"65532"} and set(gids) == {"65532"}, f"runs as uid/gid 65532 (Uid {uids}, Gid {gids})")
        check(int(proc_status["CapEff"], 16) == 0 and int(proc_status["CapBnd"], 16) == 0,
              "no capabilities (effective and bounding sets empty)")
        check(proc_status["NoNewPrivs"].strip() == "1", "no_new_privs set")
        check(proc_status["Seccomp"].strip() == "2", "seccomp filter in force (the runtime's default profile)")
        rootfs_ro = podman.run("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name).strip()
        check(rootfs_ro == "true", "read-only root filesystem")
        log, hints = podman.logs(name)
        parsed = [json.loads(line) for line in log.splitlines() if line.strip()]
        check(bool(parsed) and all("level" in e for e in parsed),
              f"stderr: {len(parsed)} log lines, every one JSON (LOG_FORMAT=json)")
        hint_lines = [line for line in hints.splitlines() if line.strip()]
        check(all(line.startswith("curl ") for line in hint_lines),
              f"stdout: {len(hint_lines)} ready-to-paste curl lines, nothing else")

        print("stop:")
        stop(podman, name)
        in_log = log_start_to_ready(podman.logs(name)[0])

        print("figures:")
        print(f"  image size: {size / 2**20:.1f} MiB")
        print(f"  podman start -> ready: median {statistics.median(from_start):.1f} ms "
              f"(min {min(from_start):.1f}, max {max(from_start):.1f}, {args.runs} runs)")
        print(f"  container process start (State.StartedAt) -> ready: median {statistics.median(from_process):.1f} ms "
              f"(min {min(from_process):.1f}, max {max(from_process):.1f})")
        if in_log:
            print(f"  server's log, first line -> 'all models ready': median {statistics.median(in_log):.1f} ms "
                  f"(min {min(in_log):.1f}, max {max(in_log):.1f})")
        print("container e2e: PASSED")
        return 0
    except (CheckFailed, subprocess.TimeoutExpired, KeyError, ValueError) as e:
        print(f"container e2e: FAILED: {e}", file=sys.stderr)
        if created:
            print("---- container logs (last 40 lines)", file=sys.stderr)
            print("\n".join(podman.logs(name)[0].splitlines()[-40:]), file=sys.stderr)
        return 1
    finally:
        if created:
            podman.run("rm", "--force", "--time", "0", name, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
