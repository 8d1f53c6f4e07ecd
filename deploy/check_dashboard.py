#!/usr/bin/env python3
"""Checks deploy/grafana-dashboard.json: it parses, and every hookfan metric its queries use is
one docs/metrics.md documents (histogram series by their base name), so a renamed metric
cannot leave a panel silently empty. Run by .ci/deploy."""
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
dashboard = json.loads((root / "deploy/grafana-dashboard.json").read_text())
documented = set(re.findall(r"^\| `(hookfan_[a-z_]+)`", (root / "docs/metrics.md").read_text(), re.M))


def queries(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


used = set()
for expr in queries(dashboard):
    for name in re.findall(r"\bhookfan_[a-z_]+", expr):
        used.add(re.sub(r"_(bucket|sum|count)$", "", name))
if not used:
    sys.exit("FAIL: the dashboard queries no hookfan metric")
unknown = sorted(used - documented)
if unknown:
    sys.exit(f"FAIL: the dashboard queries metrics docs/metrics.md does not document: {unknown}")
print(f"   grafana-dashboard.json: {len(used)} metrics queried, all documented")
