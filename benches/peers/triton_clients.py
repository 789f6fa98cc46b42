"""One caller of Triton's Python clients, `tritonclient.http` and `tritonclient.grpc` with their defaults, against one
server: single rows of the example anomaly-detector in a closed loop, the two protocols taking turns. Prints a
Markdown table: requests a second, and the CPU time per request of the server (from /proc, by its PID) and of this
client process (both protocols' clients run here, one at a time).

    python triton_clients.py --http 127.0.0.1:8080 --grpc 127.0.0.1:8081 --pid PID [--seconds 5] [--reps 3]
"""

import argparse
import os
import statistics
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

ROW = np.array([[22.69, 56.78, 60.3, 0.00327, 0.0, 100.53]], dtype=np.float32)
TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(module, url, pid, seconds):
    client = module.InferenceServerClient(url)
    row = module.InferInput("input-0", [1, 6], "FP32")
    row.set_data_from_numpy(ROW)
    for _ in range(200):  # warm-up: connections, caches
        client.infer("anomaly-detector", [row])
    n, cpu0, own0 = 0, server_cpu(pid), time.process_time()
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        answer = client.infer("anomaly-detector", [row])
        n += 1
    elapsed = time.perf_counter() - start
    assert answer.as_numpy("predict").shape == (1,), "the answer has one prediction"
    client.close()
    return n / elapsed, (server_cpu(pid) - cpu0) * 1e6 / n, (time.process_time() - own0) * 1e6 / n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    p.add_argument("--grpc", required=True)
    p.add_argument("--pid", required=True, type=int)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    runs = {"tritonclient.http": [], "tritonclient.grpc": []}
    for _ in range(a.reps):
        runs["tritonclient.http"].append(run(httpclient, a.http, a.pid, a.seconds))
        runs["tritonclient.grpc"].append(run(grpcclient, a.grpc, a.pid, a.seconds))
    base = statistics.median(r[0] for r in runs["tritonclient.http"])
    print(f"| client (1 caller) | req/s (median of {a.reps}) | range | vs HTTP | server CPU µs/request | "
          "client CPU µs/request |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for name, rs in runs.items():
        t = [r[0] for r in rs]
        med = statistics.median(t)
        server = statistics.median(r[1] for r in rs)
        own = statistics.median(r[2] for r in rs)
        print(f"| {name} | {med:.0f} | {min(t):.0f}–{max(t):.0f} | {med / base:.2f}× | {server:.1f} | {own:.1f} |")


if __name__ == "__main__":
    main()
