"""`lgc serve` against hostile clients: memory after refused large bodies, a huge request
head, and a crowd of slow clients, while well-behaved clients keep sending requests.

Starts `lgc serve` on a tiny ONNX model (4 features, symbolic batch) in a subprocess and
measures, from outside:

1. the server's resident memory (VmRSS) before, at the peak and after 20 refused 60 MB JSON
   bodies (refused only once decoded: `data` has one value too many) and 20 refused 60 MB
   binary bodies: it must end within 100 MB of where it started;
2. one client sending a 128 MB header: how soon the server refuses it, and the latency and
   failures of good requests meanwhile;
3. 200 slow clients, half trickling a request head a byte at a time, half a body: when each
   is cut off (--header-timeout-s / --body-timeout-s), and good requests meanwhile.

The peer of every latency figure is the same good load with no attacker, measured first and
last in the same run. Good requests are sent by `--good-clients` threads, one keep-alive connection
each, with a 2 s client timeout (a request over it counts as failed).

    python bench/serve_hostile.py [--http auto|h11|httptools] [--good-clients 4]
                                  [--slow-clients 200] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, load, say, write_json

GOOD_TIMEOUT_S = 2.0
GOOD_WINDOW_S = 3.0            # good load measured this long with no attacker, and at least
                               # this long from the start of the 128 MB header
HEAD_TIMEOUT_S = 5.0
BODY_TIMEOUT_S = 5.0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class RssSampler:
    """The peak resident memory of `pid`, sampled every 10 ms while the block runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class GoodLoad:
    """`clients` threads sending valid infer requests back to back until stopped."""

    def __init__(self, url: str, clients: int):
        import json
        self.url, self.clients = url, clients
        self.body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                            "data": [0.1, 0.2, 0.3, 0.4]}]}).encode()
        self.latencies: list[float] = []
        self.failures: dict[str, int] = {}
        self._stop = threading.Event()

    def _client(self):
        import httpx
        with httpx.Client(base_url=f"http://{self.url}", timeout=GOOD_TIMEOUT_S) as c:
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    r = c.post("/v2/models/m/infer", content=self.body,
                               headers={"content-type": "application/json"})
                    ok = r.status_code == 200 and len(r.json()["outputs"]) == 2
                    why = None if ok else f"status {r.status_code}"
                except httpx.HTTPError as e:
                    why = type(e).__name__
                if why is None:
                    self.latencies.append(time.perf_counter() - t)
                else:
                    self.failures[why] = self.failures.get(why, 0) + 1
                    time.sleep(0.01)

    def __enter__(self):
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for t in self._threads:
            t.start()
        time.sleep(0.5)                       # connections open and warm: count from here
        self.latencies, self.failures = [], {}
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()

    def summary(self) -> dict:
        lat = np.array(self.latencies) * 1000 if self.latencies else np.zeros(1)
        return {"ok": len(self.latencies), "failed": sum(self.failures.values()),
                "failures": dict(self.failures), "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}


def start_server(tmp: str, port: int, http: str) -> subprocess.Popen:
    sys.path.insert(0, os.path.join(common.ROOT, "tests"))
    from conftest import make_small_model
    model = os.path.join(tmp, "small.onnx")
    make_small_model(model)
    log = open(os.path.join(tmp, "serve.log"), "w")
    cmd = [sys.executable, "-m", "lgc.tools.cli", "serve", model, "--name", "m", "--port", str(port),
           "--max-batch-size", "4", "--header-timeout-s", str(HEAD_TIMEOUT_S),
           "--body-timeout-s", str(BODY_TIMEOUT_S), "--http", http]
    env = dict(os.environ, PYTHONPATH=common.ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    import httpx
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lgc serve exited: {open(log.name).read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("lgc serve did not become ready")


def refused_bodies(url: str, pid: int, n: int, mb: int) -> dict:
    """RSS before, peak and after `n` refused JSON bodies and `n` refused binary bodies."""
    import json

    import httpx
    values = mb * 1_000_000 // 5                          # "0.5, " is 5 bytes
    json_body = (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": ['
                 + b"0.5, " * (values - 1) + b"0.5]}]}")
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                   "parameters": {"binary_data_size": mb * 1_000_000}}]}).encode()
    binary_body = head + b"\0" * (mb * 1_000_000)
    out = {}
    with httpx.Client(base_url=f"http://{url}", timeout=120) as c:
        for kind, body, headers in (
                ("json", json_body, {"content-type": "application/json"}),
                ("binary", binary_body, {"content-type": "application/octet-stream",
                                         "inference-header-content-length": str(len(head))})):
            before = rss_mb(pid)
            statuses, t0 = {}, time.perf_counter()
            with RssSampler(pid) as peak:
                for i in range(n):
                    r = c.post("/v2/models/m/infer", content=body, headers=headers)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    message = r.json()["error"]
                    if i == n // 2 - 1:
                        half = rss_mb(pid)
            time.sleep(0.5)
            out[kind] = {"body_mb": len(body) / 1e6, "requests": n, "statuses": statuses,
                         "message": message, "rss_before_mb": before, "rss_peak_mb": peak.peak,
                         "rss_half_mb": half, "rss_after_mb": rss_mb(pid),
                         "seconds": time.perf_counter() - t0}
            say(f"  {kind}: {out[kind]}")
    return out


def huge_header(url: str, pid: int, mb: int, good_clients: int) -> dict:
    host, port = url.split(":")
    chunk = b"a" * (1 << 20)
    with GoodLoad(url, good_clients) as good, RssSampler(pid) as peak:
        before = rss_mb(pid)
        s = socket.create_connection((host, int(port)))
        t0 = time.perf_counter()
        sent, how = 0, "sent it all"
        try:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: ")
            for _ in range(mb):
                s.sendall(chunk)
                sent += len(chunk)
            s.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError) as e:
            how = type(e).__name__
        refused_s = time.perf_counter() - t0
        s.settimeout(30)
        try:
            answer = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
        except (ConnectionResetError, socket.timeout) as e:
            answer = type(e).__name__
        s.close()
        time.sleep(max(0.0, GOOD_WINDOW_S - (time.perf_counter() - t0)))
    return {"header_mb": mb, "sent_mb_before_refusal": sent / 1e6, "client_saw": how,
            "answer": answer or "closed", "refused_after_s": refused_s,
            "rss_before_mb": before, "rss_peak_mb": peak.peak, "good": good.summary()}


def slow_clients(url: str, n: int, good_clients: int) -> dict:
    """n/2 clients trickle a head, n/2 a body, one byte every 0.5 s each, until cut off."""
    host, port = url.split(":")
    sel = selectors.DefaultSelector()
    conns = []
    with GoodLoad(url, good_clients) as good:
        t0 = time.perf_counter()
        for i in range(n):
            s = socket.create_connection((host, int(port)))
            kind = "head" if i % 2 == 0 else "body"
            if kind == "head":
                s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\n")
            else:
                s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000\r\n\r\n{")
            s.setblocking(False)
            c = {"sock": s, "kind": kind, "start": time.perf_counter(), "closed": None, "answer": b""}
            conns.append(c)
            sel.register(s, selectors.EVENT_READ, c)
        opened_s = time.perf_counter() - t0
        next_trickle = time.perf_counter() + 0.5
        deadline = time.perf_counter() + max(HEAD_TIMEOUT_S, BODY_TIMEOUT_S) + 15
        while any(c["closed"] is None for c in conns) and time.perf_counter() < deadline:
            for key, _ in sel.select(timeout=0.05):
                c = key.data
                try:
                    data = c["sock"].recv(4096)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                c["answer"] += data
                if not data:
                    c["closed"] = time.perf_counter() - c["start"]
                    sel.unregister(c["sock"])
                    c["sock"].close()
            if time.perf_counter() >= next_trickle:
                next_trickle += 0.5
                for c in conns:
                    if c["closed"] is None:
                        try:
                            c["sock"].send(b"x" if c["kind"] == "head" else b"1")
                        except OSError:
                            pass
        for c in conns:
            if c["closed"] is None:
                sel.unregister(c["sock"])
                c["sock"].close()
    out = {"clients": n, "opened_in_s": opened_s, "good": good.summary()}
    for kind, limit in (("head", HEAD_TIMEOUT_S), ("body", BODY_TIMEOUT_S)):
        group = [c for c in conns if c["kind"] == kind]
        closed = np.array([c["closed"] for c in group if c["closed"] is not None])
        answers = {}
        for c in group:
            line = c["answer"].split(b"\r\n", 1)[0].decode(errors="replace") or "(closed, no answer)"
            answers[line] = answers.get(line, 0) + 1
        out[kind] = {"clients": len(group), "timeout_s": limit, "closed": int(closed.size),
                     "closed_after_s_min": float(closed.min()) if closed.size else None,
                     "closed_after_s_median": float(np.median(closed)) if closed.size else None,
                     "closed_after_s_max": float(closed.max()) if closed.size else None,
                     "answers": answers}
    return out


def baseline(url: str, pid: int, good_clients: int) -> dict:
    """The good load alone (with the RSS sampler running, as in the header phase)."""
    with GoodLoad(url, good_clients) as good, RssSampler(pid):
        time.sleep(GOOD_WINDOW_S)
    return good.summary()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--good-clients", type=int, default=4)
    ap.add_argument("--slow-clients", type=int, default=200)
    ap.add_argument("--bodies", type=int, default=20)
    ap.add_argument("--body-mb", type=int, default=60)
    ap.add_argument("--header-mb", type=int, default=128)
    ap.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"],
                    help="uvicorn's HTTP parser in the server (lgc serve --http)")
    ap.add_argument("--json")
    args = ap.parse_args()
    from lgc.serve.server import free_port
    say(f"{cpu_model()}; {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_server(tmp, port, args.http)
        url = f"127.0.0.1:{port}"
        try:
            from lgc.serve.connection import resolve_stack
            res = {"cpu": cpu_model(), "http": resolve_stack(args.http)}
            say("warm-up (not counted) ...")
            baseline(url, proc.pid, args.good_clients)
            say("baseline (no attacker) ...")
            res["baseline"] = baseline(url, proc.pid, args.good_clients)
            say("refused bodies ...")
            res["refused"] = refused_bodies(url, proc.pid, args.bodies, args.body_mb)
            say("huge header ...")
            res["header"] = huge_header(url, proc.pid, args.header_mb, args.good_clients)
            say("slow clients ...")
            res["slow"] = slow_clients(url, args.slow_clients, args.good_clients)
            say("baseline again ...")
            res["baseline_after"] = baseline(url, proc.pid, args.good_clients)
            res["rss_end_mb"] = rss_mb(proc.pid)
            res["server_alive"] = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log_lines = open(os.path.join(tmp, "serve.log")).read().splitlines()
    res["server_log_lines"] = len(log_lines)
    res["server_log_sample"] = log_lines[-4:]
    report(res, args)
    write_json(args.json, res)


def report(r: dict, args) -> None:
    print(f"# lgc serve ({r['http']} stack) against hostile clients ({r['cpu']}; {load()})\n")
    print(f"## 1. Refused {args.body_mb} MB bodies, {args.bodies} of each kind (server RSS, MB)\n")
    print(f"| body | answers | before | peak | after {args.bodies // 2} | after {args.bodies} | "
          f"after - before |")
    print("|---|---|---|---|---|---|---|")
    for kind, x in r["refused"].items():
        answers = ", ".join(f"{k} x{v}" for k, v in x["statuses"].items())
        print(f"| {kind} {x['body_mb']:.0f} MB | {answers} | {x['rss_before_mb']:.0f} | "
              f"{x['rss_peak_mb']:.0f} | {x['rss_half_mb']:.0f} | {x['rss_after_mb']:.0f} | "
              f"{x['rss_after_mb'] - x['rss_before_mb']:+.0f} |")
    h = r["header"]
    print(f"\n## 2. One client sends a {h['header_mb']} MB header (limit 64 KiB) while "
          f"{args.good_clients} clients send good requests\n")
    print(f"refused after {h['refused_after_s'] * 1000:.0f} ms, {h['sent_mb_before_refusal']:.1f} MB "
          f"sent; the client saw {h['client_saw']}, answer: {h['answer']!r}; server RSS "
          f"{h['rss_before_mb']:.0f} -> peak {h['rss_peak_mb']:.0f} MB\n")
    s = r["slow"]
    print_good([("no attacker, first (peer)", r["baseline"]),
                (f"during the {h['header_mb']} MB header", h["good"]),
                (f"during {s['clients']} slow clients", s["good"]),
                ("no attacker, last", r["baseline_after"])])
    print(f"\n## 3. {s['clients']} slow clients, one byte every 0.5 s each "
          f"(opened in {s['opened_in_s']:.2f} s)\n")
    print("| trickling | clients | timeout s | closed | closed after s (min / median / max) | answers |")
    print("|---|---|---|---|---|---|")
    for kind in ("head", "body"):
        x = s[kind]
        t = "-" if x["closed_after_s_min"] is None else " / ".join(
            f"{x[f'closed_after_s_{q}']:.2f}" for q in ("min", "median", "max"))
        answers = ", ".join(f"{k} x{v}" for k, v in x["answers"].items())
        print(f"| {kind} | {x['clients']} | {x['timeout_s']:g} | {x['closed']} | {t} | {answers} |")
    print(f"\nserver alive at the end: {r['server_alive']}, RSS {r['rss_end_mb']:.0f} MB; "
          f"its log: {r['server_log_lines']} lines, the last ones:\n")
    for line in r["server_log_sample"]:
        print(f"    {line}")


def print_good(rows) -> None:
    print("| good requests | ok | failed | p50 ms | p99 ms | max ms | p99 vs peer |")
    print("|---|---|---|---|---|---|---|")
    peer = rows[0][1]["p99_ms"]
    for name, g in rows:
        fails = g["failed"] if not g["failures"] else f"{g['failed']} {g['failures']}"
        print(f"| {name} | {g['ok']} | {fails} | {g['p50_ms']:.1f} | {g['p99_ms']:.1f} | "
              f"{g['max_ms']:.0f} | {g['p99_ms'] / peer:.2f}x |")


if __name__ == "__main__":
    main()
