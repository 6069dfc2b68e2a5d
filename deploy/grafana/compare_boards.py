#!/usr/bin/env python3
"""Do two versions of the boards and rules show the same numbers over two versions of the series?

    python deploy/grafana/compare_boards.py --old-root /tmp/old --old-metrics old.txt --new-metrics new.txt

For a change of what workers expose (a label dropped, a family split): the /metrics text of the
old and the new code for the same events read at the same instant
(``python -m benchmarks.exposition demo --now T --dump FILE`` in each checkout) is served to two
real Prometheus servers, each loading its own tree's recording rules; then every panel query of
the old boards and of the new boards (paired by board, panel title and refId) is evaluated on its
own server for the boards' defaults and for every single value of every variable, and every
recorded series is compared. A variable that no longer filters a query (its series lost the
label) is not compared for that query. Series present on one side only with value 0 (a labelset
published at 0 by one version only) are counted apart, not as differences. Recording rules are
compared by evaluating their expressions at one instant on both servers (``time()`` alike).
Prints every difference; exit 1 if there is one.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "5m"}
IGNORED_LABELS = ("instance", "job")


def variables_in(expr: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VARIABLE_RE.finditer(expr)}


def substitute(expr: str, values: dict[str, str]) -> str:
    return VARIABLE_RE.sub(lambda m: values.get(next(g for g in m.groups() if g), m.group(0)), expr)


def queries(board: dict) -> dict[tuple[str, str], str]:
    out = {}
    for panel in board["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            for t in p.get("targets", []):
                out[(p["title"], t["refId"])] = t["expr"]
    return out


def boards(root: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((root / "deploy/grafana/dashboards").glob("*.json"))}


def serve(text: bytes) -> int:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def as_map(result: list[dict]) -> dict[tuple, float]:
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k not in IGNORED_LABELS)): float(r["value"][1])
        for r in result
    }


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        x == y or (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
        for x, y in ((a[k], b[k]) for k in a)
    )


def nonzero(a: dict) -> dict:
    return {k: v for k, v in a.items() if v != 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-root", type=Path, required=True, help="checkout of the old code")
    parser.add_argument("--new-root", type=Path, default=HERE.parents[1], help="default: this checkout")
    parser.add_argument("--old-metrics", type=Path, required=True)
    parser.add_argument("--new-metrics", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stream-app-compare-boards"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.new_root))
    from stream_app.tools.promstack import PrometheusProcess

    roots = {"old": args.old_root, "new": args.new_root}
    proms = {}
    try:
        for which, text in (("old", args.old_metrics), ("new", args.new_metrics)):
            port = serve(text.read_bytes())
            rules = sorted((roots[which] / "deploy/prometheus/rules").glob("*.y*ml"))
            proms[which] = PrometheusProcess(args.workdir / which, [f"127.0.0.1:{port}"], rule_files=rules,
                                             scrape_interval=1.0).start()  # fmt: skip
        time.sleep(8)  # a few scrapes and rule evaluations
        at = time.time()
        old_b, new_b = boards(args.old_root), boards(args.new_root)
        checked = differ = skipped = zeros = 0
        for name in sorted(new_b.keys() & old_b.keys()):
            oq, nq = queries(old_b[name]), queries(new_b[name])
            if oq.keys() != nq.keys():
                print(f"{name}: panels differ: {sorted(oq.keys() ^ nq.keys())}")
                differ += 1
            defaults = dict(BUILTINS)
            for v in new_b[name]["templating"]["list"]:
                defaults[v["name"]] = ".*" if v.get("multi") else v["current"]["value"]
            settings: list[dict[str, str]] = [{}]
            for v in new_b[name]["templating"]["list"]:
                m = re.match(r"label_values\((\w+),\s*(\w+)\)", v["query"]["query"])
                if m and m.group(2) not in IGNORED_LABELS:  # the two servers' targets differ
                    settings += [{v["name"]: x} for x in proms["new"].label_values(m.group(2), match=m.group(1))]
            for over in settings:
                values = {**defaults, **over}
                for key in sorted(oq.keys() & nq.keys()):
                    if any(var in variables_in(oq[key]) and var not in variables_in(nq[key]) for var in over):
                        skipped += 1
                        continue
                    a = as_map(proms["old"].query(substitute(oq[key], values), at=at))
                    b = as_map(proms["new"].query(substitute(nq[key], values), at=at))
                    checked += 1
                    if not same(a, b) and same(nonzero(a), nonzero(b)):
                        zeros += 1
                    elif not same(a, b):
                        differ += 1
                        print(f"DIFF {name} {over or 'defaults'} {key}: old {sorted(a.items())[:3]} new {sorted(b.items())[:3]}")
        print(f"panel queries compared: {checked}, differing: {differ}, equal but for series at 0 on one "
              f"side: {zeros}, not comparable (filter removed): {skipped}")
        rules = {(r["name"], r["query"]) for which in proms for r in proms[which].rules() if r["type"] == "recording"}
        rule_diff = 0
        for name, expr in sorted(rules):
            a, b = as_map(proms["old"].query(expr, at=at)), as_map(proms["new"].query(expr, at=at))
            if not same(a, b):
                rule_diff += 1
                print(f"RULE DIFF {name}: old {sorted(a.items())[:3]} new {sorted(b.items())[:3]}")
        print(f"recording rule expressions compared: {len(rules)}, differing: {rule_diff}")
        return 1 if differ or rule_diff else 0
    finally:
        for p in proms.values():
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
