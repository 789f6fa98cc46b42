#!/usr/bin/env python3
"""Runs the commands of README.md, examples/*.md and docs/*.md against real binaries, so that the docs cannot go
stale silently.

What is checked. Every ```console block is a transcript and is run, unless an HTML comment right before it says
`<!-- docs-check: skip REASON -->` (a cluster, a registry, a GPU, a long benchmark). Lines starting with `$ ` are
commands (continued over the following lines until bash reads a complete command); the lines after a command are what
it printed. ```sh, ```yaml and other blocks are not run: they show what cannot run here, or what a transcript shows
too. The summary lists, per file, the commands run and the blocks left unchecked, so coverage is visible.

Where. Each file runs in a fresh temporary directory holding copies of `examples/` and `tests/fixtures/`, as in a
clone, so that training and rollouts in the docs never touch the checkout. `ferroserve` and `ferroserve-train` are
on PATH (the debug build). The commands of a file run in order, one shell after the other, like lines typed in one
terminal: the working directory and exported variables carry over.

Servers. `<!-- docs-check: serve -->` before a ```sh block runs that block as the server of the transcripts that
follow, as a user's second terminal at the clone's root would: `ferroserve ARGS`, a path to it
(`target/release/ferroserve ARGS`) or `cargo run [--release] -p ferroserve -- ARGS`, after optional `VAR=value`
assignments; the debug build runs it. `<!-- docs-check: serve ARGS -->` starts `ferroserve ARGS` without showing a
block. Either stops the previous server first. The server gets `--host 127.0.0.1` and free ports for `--http_port`
and `--grpc_port`, which replace `127.0.0.1:8080` and `127.0.0.1:8081` in commands and in their documented output;
the check waits for `/v2/health/ready`. `<!-- docs-check: wait-log TEXT -->` waits (30 s at most) until the server
logs a line holding TEXT after the previous command started: what a user sees in the server's terminal before going
on (a rollout applied). A server must stop with exit code 0 on SIGTERM.

What must hold.
- A command exits 0, or with the status of a `(exit N)` line among its documented output.
- The documented lines appear in the output (stdout and stderr, as a terminal shows them), in their order; other
  printed lines may come between them. A JSON line, or a JSON document wrapped over several lines, is compared as
  JSON (numbers within 1e-6 relative). `…` in a line stands for any text (a time, a duration, a digest), the rest of
  the line must be printed, with any spacing. Not compared: empty lines, lines that are only `…`, remarks in
  parentheses (`(the same, for version v1)`), and the headers `date:` and `content-length:`.
- No command and no server prints a panic or a stack trace.
- An unknown `docs-check` comment, or one not followed by the block it applies to, is an error.

Cost: about 40 s on 2 shared cores with the debug build, half of it the LSTM training of docs/lstm.md; the rest is
servers starting in milliseconds and the waits for hot-swaps (each about 0.6 s).

Usage: .ci/check-docs.py [--bin-dir target/debug] [FILE.md ...]   ($CARGO_TARGET_DIR is honoured)
"""

import argparse
import glob
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIED = ["examples", "tests/fixtures"]
VOLATILE = re.compile(r"^(date|content-length):", re.I)
PANIC = re.compile(r"panicked at|stack backtrace", re.I)
MARK = re.compile(r"^\s*<!--\s*docs-check:\s*(\S+)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
ELLIPSIS = "…"


def files(args):
    if args:
        return args
    return ["README.md", *sorted(glob.glob("examples/*.md", root_dir=ROOT)),
            *sorted(glob.glob("docs/*.md", root_dir=ROOT))]


def events(name, text):
    """The file's fenced blocks and directives in document order: (kind, payload) with kind one of `console`,
    `skip` (a console block and the reason), `serve` (the command), `wait-log`, or `other` (the language)."""
    out, pending, lines, i = [], None, text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if m := MARK.match(line):
            if pending:
                sys.exit(f"{name}:{i}: docs-check `{pending[0]}` is followed by another docs-check comment")
            verb, rest = m.group(1), m.group(2)
            if verb == "serve" and rest:
                out.append(("serve", "ferroserve " + rest))
            elif verb == "wait-log" and rest:
                out.append(("wait-log", rest))
            elif (verb == "serve" and not rest) or (verb == "skip" and rest):
                pending = (verb, rest, i)
            else:
                sys.exit(f"{name}:{i}: unknown docs-check comment: {line.strip()}")
            continue
        fence = FENCE.match(line)
        if not fence:
            if pending and line.strip():
                sys.exit(f"{name}:{pending[2]}: docs-check `{pending[0]}` is not right before a fenced block")
            continue
        indent, lang, body = fence.group(1), fence.group(2), []
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        block = "\n".join(body) + "\n"
        if pending and pending[0] == "serve":
            if lang != "sh":
                sys.exit(f"{name}:{pending[2]}: docs-check `serve` must come right before a ```sh block")
            out.append(("serve", block))
        elif pending and pending[0] == "skip":
            if lang != "console":
                sys.exit(f"{name}:{pending[2]}: docs-check `skip` must come right before a ```console block")
            out.append(("skip", (block, pending[1])))
        elif lang == "console":
            out.append(("console", block))
        else:
            out.append(("other", lang or "plain"))
        pending = None
    if pending:
        sys.exit(f"{name}:{pending[2]}: docs-check `{pending[0]}` at the end of the file applies to nothing")
    return out


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
        out.append((command, expected))
    return out


def depth(text):
    """How many brackets `text` leaves open, outside JSON strings."""
    n, in_string, escaped = 0, False, False
    for c in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = c == "\\", c != '"'
        elif c == '"':
            in_string = True
        elif c in "[{":
            n += 1
        elif c in "]}":
            n -= 1
    return n


def documents(lines):
    """The lines a command is documented to print, as (kind, value, documented text) with kind `json` (a document
    wrapped over several lines joined into one), `pattern` (a line with `…`) or `text`; and the documented exit
    status."""
    out, status, i = [], 0, 0
    while i < len(lines):
        line = lines[i].rstrip()
        i += 1
        if m := re.fullmatch(r"\(exit (\d+)\)", line.strip()):
            status = int(m.group(1))
            continue
        if not line.strip() or line.strip() in (ELLIPSIS, "...") or VOLATILE.match(line):
            continue
        if line.startswith("(") and line.endswith(")"):
            continue
        if line.startswith(("{", "[")):
            joined, j = line, i
            while depth(joined) > 0 and j < len(lines):
                joined += lines[j].strip()
                j += 1
            if (value := parse(joined)) is not None:
                out.append(("json", value, joined))
                i = j
                continue
            if ELLIPSIS in joined and depth(joined) == 0:
                line, i = joined, j
        if ELLIPSIS in line:
            pattern = re.compile(r"\s*" + ".*?".join(map(spaced, line.strip().split(ELLIPSIS))) + r"\s*")
            out.append(("pattern", pattern, line.strip()))
        else:
            out.append(("text", line.strip(), line.strip()))
    return out, status


def spaced(text):
    """`text` as a regular expression in which spacing may differ: a space between two words stands for any
    spacing, a space next to punctuation (JSON written with or without spaces) for any or none."""
    words = text.split()
    pattern = re.escape(words[0]) if words else ""
    for before, word in zip(words, words[1:]):
        pattern += (r"\s+" if before[-1].isalnum() and word[0].isalnum() else r"\s*") + re.escape(word)
    return pattern


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


def matches(want, line):
    kind, value, _ = want
    if kind == "text":
        return line.strip() == value
    if kind == "pattern":
        return value.fullmatch(line) is not None
    got = parse(line.strip())
    return got is not None and got[1] == value[1] and close(got[0], value[0])


def missing(expected, actual):
    """The documented lines not printed in their order, as the doc writes them."""
    i, left = 0, []
    for want in expected:
        j = next((j for j in range(i, len(actual)) if matches(want, actual[j])), None)
        if j is None:
            left.append(want[2])
        else:
            i = j + 1
    return left


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `ferroserve` started as a doc's serve directive says, on 127.0.0.1 and free ports."""

    def __init__(self, command, session):
        words = shlex.split(command, comments=True)
        env = dict(session.env)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        if words[:2] == ["cargo", "run"] and "--" in words and "ferroserve" in words[:words.index("--")]:
            words = words[words.index("--") + 1:]
        elif words and os.path.basename(words[0]) == "ferroserve":  # on PATH, or target/release/ferroserve
            words = words[1:]
        else:
            sys.exit(f"{session.name}: a served block must run `ferroserve` or `cargo run -p ferroserve --`: {command!r}")
        self.command, self.port, self.grpc = command.strip(), free_port(), free_port()
        self.log_path = os.path.join(session.dir, f".server-{self.port}.log")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [os.path.join(session.bin_dir, "ferroserve"), *words, "--host", "127.0.0.1", "--http_port", str(self.port),
             "--grpc_port", str(self.grpc)], cwd=session.root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise Failure(f"the server of {self.command!r} exited with {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.1)
        self.process.kill()
        raise Failure(f"the server of {self.command!r} was not ready within 120 s:\n{self.tail()}")

    def text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def tail(self):
        return "\n".join(self.text().splitlines()[-15:])

    def wait_log(self, text, since):
        deadline = time.time() + 30
        while time.time() < deadline:
            if any(text in line for line in self.text()[since:].splitlines()):
                return
            time.sleep(0.05)
        raise Failure(f"the server did not log {text!r} within 30 s:\n{self.tail()}")

    def stop(self):
        """Stops the server with SIGTERM, as Kubernetes does; problems as a list of messages."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = "none within 40 s"
        self.log.close()
        problems = []
        if code != 0:
            problems.append(f"the server of {self.command!r} exited with {code} on SIGTERM:\n{self.tail()}")
        if PANIC.search(self.text()):
            problems.append(f"the server of {self.command!r} logged a panic:\n{self.text()[-3000:]}")
        return problems


class Failure(Exception):
    pass


class Session:
    """One file's terminal: a temporary copy of the example files, the working directory and exported variables."""

    def __init__(self, name, bin_dir):
        self.name, self.bin_dir = name, bin_dir
        self.dir = tempfile.mkdtemp(prefix="docs-check-")
        self.root = os.path.join(self.dir, "clone")
        for path in COPIED:
            shutil.copytree(os.path.join(ROOT, path), os.path.join(self.root, path), symlinks=True)
        self.env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], RUST_BACKTRACE="1")
        self.env_file, self.cwd_file = os.path.join(self.dir, ".env"), os.path.join(self.dir, ".cwd")
        with open(self.cwd_file, "w") as f:
            f.write(self.root)
        open(self.env_file, "w").close()
        self.server, self.log_mark = None, 0

    def ports(self, text):
        if self.server:
            text = text.replace("127.0.0.1:8080", f"127.0.0.1:{self.server.port}")
            text = text.replace("127.0.0.1:8081", f"127.0.0.1:{self.server.grpc}")
        return text

    def run(self, command, lines):
        expected, status = documents([self.ports(line) for line in lines])
        with open(self.cwd_file) as f:
            cwd = f.read().strip()
        script = (f"cd {shlex.quote(cwd)} && source {shlex.quote(self.env_file)}\n{self.ports(command)}\n"
                  f"__status=$?; export -p > {shlex.quote(self.env_file)}; pwd > {shlex.quote(self.cwd_file)}; "
                  f"exit $__status")
        self.log_mark = len(self.server.text()) if self.server else 0
        try:
            p = subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=self.root, env=self.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
            output, code = p.stdout, p.returncode
        except subprocess.TimeoutExpired as e:
            output, code = (e.stdout or b"").decode(errors="replace"), "none within 180 s"
        left = missing(expected, output.splitlines())
        problems = []
        if code != status:
            problems.append(f"exit {code}, documented {status}")
        if left:
            problems.append(f"documented but not printed (in this order): {left}")
        if PANIC.search(output):
            problems.append("it printed a panic or a stack trace")
        if problems:
            raise Failure(f"$ {command}\n  " + "; ".join(problems) + f"\n  printed:\n{indent(output)}")

    def serve(self, command):
        """Starts the server of `command` after stopping the previous one; that one's problems."""
        problems = self.stop()
        self.server = Server(command, self)
        return problems

    def stop(self):
        problems = self.server.stop() if self.server else []
        self.server = None
        return problems

    def close(self):
        problems = self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


def indent(text, limit=2500):
    text = text.strip()
    if len(text) > limit:
        text = text[:limit] + "\n…"
    return "\n".join("    " + line for line in text.splitlines())


def check(name, bin_dir):
    """Runs one file; returns (summary line, commands run, failures)."""
    started = time.time()
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        plan = events(name, f.read())
    ran, blocks, servers, failures, skipped, other = 0, 0, 0, [], [], {}
    # Only files with something to run get a copy of the examples.
    session = Session(name, bin_dir) if any(kind in ("console", "serve") for kind, _ in plan) else None
    try:
        for kind, payload in plan:
            try:
                if kind == "serve":
                    failures += session.serve(payload)
                    servers += 1
                elif kind == "wait-log":
                    if not session or not session.server:
                        raise Failure(f"`wait-log {payload}` with no server running")
                    session.server.wait_log(payload, session.log_mark)
                elif kind == "console":
                    blocks += 1
                    for command, lines in transcript(payload):
                        ran += 1
                        try:
                            session.run(command, lines)
                        except Failure as e:  # the next commands may still pass: report them all
                            failures.append(str(e))
                elif kind == "skip":
                    skipped.append(payload[1])
                else:
                    other[payload] = other.get(payload, 0) + 1
            except Failure as e:  # a server that does not start, a log line that never comes: stop here
                failures.append(str(e))
                break
    finally:
        if session:
            failures += session.close()
    return summary(name, ran, blocks, servers, skipped, other, time.time() - started), ran, failures


def summary(name, ran, blocks, servers, skipped, other, seconds):
    line = f"{name}: {ran} command(s) in {blocks} console block(s) run"
    if servers:
        line += f" against {servers} server(s)"
    line += f" ({seconds:.1f} s)"
    if skipped:
        line += f"; console blocks skipped: {len(skipped)} ({' | '.join(skipped)})"
    if other:
        line += "; not run: " + ", ".join(f"{n} {lang}" for lang, n in sorted(other.items()))
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    parser.add_argument("--bin-dir", default=os.path.join(target, "debug"),
                        help="the folder holding ferroserve and ferroserve-train")
    parser.add_argument("files", nargs="*", help="Markdown files, relative to the repository root [default: all]")
    args = parser.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    for binary in ("ferroserve", "ferroserve-train"):
        if not os.access(os.path.join(bin_dir, binary), os.X_OK):
            sys.exit(f"{bin_dir}/{binary} is missing: cargo build --locked -p ferroserve -p ferroserve-train")
    started, total, failed = time.time(), 0, []
    for name in files(args.files):
        line, ran, failures = check(name, bin_dir)
        print(line, flush=True)
        total += ran
        failed += [f"{name}: {f}" for f in failures]
    for f in failed:
        print(f"\nFAILED {f}", file=sys.stderr)
    print(f"docs: {total} documented commands run in {time.time() - started:.0f} s, {len(failed)} failure(s)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
