#!/usr/bin/env python3
"""Copies the strict Kubernetes schemas the project uses and prunes `_definitions.json` to the
definitions those kinds reach. Usage: prune.py SOURCE_DIR (a `v1.37.0-local-strict` folder of
the PyPI package kubernetes-validate)."""
import json, os, re, sys

KINDS = ["job-batch-v1", "pod-v1", "event-v1", "event-events-v1", "secret-v1", "namespace-v1",
         "lease-coordination-v1", "status-meta-v1", "configmap-v1", "serviceaccount-v1",
         "deployment-apps-v1", "role-rbac-v1", "rolebinding-rbac-v1", "clusterrole-rbac-v1",
         "clusterrolebinding-rbac-v1"]
# Kinds refer to `/api/_definitions.json#/$defs/X`; definitions to each other as `#/$defs/X`.
REF = re.compile(r'"(?:/api/_definitions\.json)?#/\$defs/([^"]+)"')

source = sys.argv[1]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "v1.37.0-local-strict")
os.makedirs(out, exist_ok=True)
defs = json.load(open(os.path.join(source, "_definitions.json")))["$defs"]
wanted, todo = set(), []
for kind in KINDS:
    text = open(os.path.join(source, kind + ".json")).read()
    open(os.path.join(out, kind + ".json"), "w").write(text)
    todo += REF.findall(text)
while todo:
    name = todo.pop()
    if name not in wanted:
        wanted.add(name)
        todo += REF.findall(json.dumps(defs[name]))
pruned = {"$defs": {name: defs[name] for name in sorted(wanted)}}
json.dump(pruned, open(os.path.join(out, "_definitions.json"), "w"), indent=1, sort_keys=True)
print(f"{len(KINDS)} kinds, {len(wanted)} of {len(defs)} definitions")
