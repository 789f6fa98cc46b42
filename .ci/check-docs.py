#!/usr/bin/env python3
"""Runs the documented calls against a real server, so that the docs cannot go stale silently.

Every ```console block of the files below is a transcript: lines starting with `$ ` are commands (continued over
following lines until bash reads a complete command), the lines after them are what the command printed. Each
command runs in order, in bash, from the repository root, against the server that the file's first ```sh block
starts (run here from the debug build, on a free port that replaces 8080 everywhere). A command must exit 0, and
every line it is documented to print must be among the lines it printed (JSON lines compared as JSON, numbers
within 1e-6 relative); header lines that change with every run (`date:`) are not compared.

Usage: .ci/check-docs.py [--bin target/debug/ferroserve]   ($CARGO_TARGET_DIR is honoured)
"""

import argparse
import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["examples/curl.md"]
VOLATILE = re.compile(r"^(date|content-length):", re.I)


def blocks(text, lang):
    return re.findall(r"^```" + lang + r"\n(.*?)^```", text, re.S | re.M)


def complete(command):
    """Whether bash reads `command` as complete (no open quote, heredoc or trailing backslash)."""
    if command.rstrip().endswith("\\"):
        return False
    return subprocess.run(["bash", "-n"], input=command, text=True, capture_output=True).returncode == 0


def transcript(block):
    """(command, expected output lines) pairs of a console block."""
    lines = block.splitlines()
    out, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        i += 1
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", command)
        while i < len(lines) and (not complete(command) or heredoc):
            command += "\n" + lines[i]
            i += 1
            if heredoc and lines[i - 1].strip() == heredoc.group(1):
                heredoc = None
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        out.append((command, documents(expected)))
    return out


def documents(lines):
    """The expected lines, with a JSON document wrapped over several lines joined into one, and remarks in
    parentheses (`(the same, for version v1)`) left out."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("(") and line.rstrip().endswith(")"):
            continue
        if line.startswith(("{", "[")) and parse(line) is None:
            joined = line
            while i < len(lines) and parse(joined.strip()) is None:
                joined += lines[i].strip()
                i += 1
            line = joined
        out.append(line)
    return out


def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def parse(line):
    """A line as (JSON value, trailing text), or None when it does not start with a JSON object or array."""
    if not line.startswith(("{", "[")):
        return None
    try:
        value, end = json.JSONDecoder().raw_decode(line)
    except ValueError:
        return None
    return value, line[end:].strip()


def printed(expected, actual):
    want, got = parse(expected), None
    for line in actual:
        if want is None:
            if line.strip() == expected.strip():
                return True
        elif (got := parse(line)) is not None and got[1] == want[1] and close(got[0], want[0]):
            return True
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(doc, binary, port):
    start = blocks(doc, "sh")[0].strip()
    args = shlex.split(start.split(" -- ", 1)[1])
    server = subprocess.Popen([binary, *args, "--http_port", str(port), "--grpc_port", str(free_port())], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None:
            sys.exit(f"the server of {start!r} exited with {server.returncode}")
        time.sleep(0.1)
    server.kill()
    sys.exit(f"the server of {start!r} never became ready")


def main():
    parser = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    parser.add_argument("--bin", default=os.path.join(target, "debug/ferroserve"))
    binary = parser.parse_args().bin
    failures, ran = [], 0
    for name in FILES:
        doc = open(os.path.join(ROOT, name), encoding="utf-8").read()
        port = free_port()
        server = serve(doc, binary, port)
        try:
            for block in blocks(doc, "console"):
                for command, expected in transcript(block):
                    run = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                    p = subprocess.run(["bash", "-o", "pipefail", "-c", run], cwd=ROOT, capture_output=True,
                                       text=True, timeout=120)
                    ran += 1
                    actual = p.stdout.splitlines()
                    missing = [e for e in expected if e.strip() and not VOLATILE.match(e) and not printed(e, actual)]
                    if p.returncode != 0 or missing:
                        failures.append(f"{name}: $ {command}\n  exit {p.returncode}; documented but not printed: "
                                        f"{missing}\n  printed: {p.stdout.strip()[:600]}\n  stderr: {p.stderr.strip()[:300]}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    for f in failures:
        print(f"FAILED {f}\n", file=sys.stderr)
    print(f"docs: {ran} documented commands run, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
