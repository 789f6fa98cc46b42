#!/usr/bin/env python3
"""Process start to ready: how long `ferroserve` takes from exec to its first 200 on /v2/health/ready, for each
model of the example repository, and its resident memory once ready.

    cargo build --release -p ferroserve
    python3 benches/cold_start.py [--runs 11] [--binary target/release/ferroserve]

KServe starts a new pod for every storageUri change, and Knative canaries are new revisions: this is the time a
rollout waits for (after the container starts). Servers listen on 127.0.0.1 only and are stopped by their PID.
Standard library only.
"""

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        c.request("GET", "/v2/health/ready")
        return c.getresponse().status == 200
    except OSError:
        return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def once(binary, args):
    port = free_port()
    started = time.perf_counter()
    # The gRPC port too: the server binds both, and the default 8081 may be taken.
    proc = subprocess.Popen([binary, *args, "--host", "127.0.0.1", "--http_port", str(port), "--grpc_port", str(free_port())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = started + 30
        while not ready(port):
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"ferroserve {' '.join(args)} did not get ready")
            time.sleep(0.0005)
        elapsed = time.perf_counter() - started
        return elapsed, rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=11)
    p.add_argument("--binary", default=os.path.join(ROOT, "target/release/ferroserve"))
    a = p.parse_args()
    models = os.path.join(ROOT, "examples/models")
    cases = [
        (f"{name} (latest)", ["--model_name", name, "--model_dir", os.path.join(models, name)])
        for name in sorted(os.listdir(models))
    ]
    cases.append(("whole repository, every version", ["--model_repository", models, "--version_policy", "all"]))
    print("| models served | start → ready, median | min | max | RSS when ready |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, args in cases:
        once(a.binary, args)  # warm the page cache
        runs = [once(a.binary, args) for _ in range(a.runs)]
        times = sorted(r[0] * 1000 for r in runs)
        rss = statistics.median(r[1] for r in runs) / 1024
        print(f"| {label} | {statistics.median(times):.1f} ms | {times[0]:.1f} ms | {times[-1]:.1f} ms | {rss:.1f} MiB |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
