#!/usr/bin/env python3
"""Random flow runs for the differential test of the stock plugin, with Prefect's Job for each.

A seeded generator makes realistic and awkward inputs (pool templates with variables of their
own, env as a dict, a list, null or with valueFrom, sidecars, shell commands with quotes,
comments and escapes, names in many scripts and emoji, templated names, dotted variables,
explicit nulls, deployment or pool absent) and renders each with prefect-kubernetes' own code
(`prefect_job.job_manifest`, as the golden cases are). The Rust test renders the same cases
with the agent and compares.

Usage (the project's venv):
  differential.py SEED COUNT         prints {"cases": [{"case": …, "prefect": manifest}|{…, "error": …}]}
  differential.py --slugs FIRST LAST  prints prefect-kubernetes' slugs for every code point in
                                      [FIRST, LAST] (hex), with its Unicode category
"""
import asyncio
import json
import os
import random
import sys
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import prefect_job  # noqa: E402

AGENT = {"name": "differential agent", "api_url": "http://prefect:4200/api"}
# Set in main: prefect-kubernetes' stock Job manifest.
STOCK_MANIFEST = {}

# Text from many scripts, symbols and emoji: names and label values must slug as Prefect's do.
SCRIPTS = [
    "flow", "Nightly ETL", "Crème brûlée", "Ærøskøbing", "straße", "Ĳssel", "naïve café",
    "Москва", "Ελληνικά", "עברית", "العربية", "हिन्दी", "日本語のフロー", "カタカナ", "ひらがな",
    "中文流程", "한국어", "ภาษาไทย", "Tiếng Việt", "Ωmega", "ℌello", "℺ marks", "™®©",
    "∑ ∫ √ ∞", "½ ¾ ⅞", "①②③", "🙂 happy", "🚀 launch", "👩‍💻 dev", "🇫🇷 flag", "☃ snow",
    "tab\tsep", "new\nline", "quote's", '"double"', "a&amp;b", "&#38;", "&#x26;", "1,000 rows",
    "dots.and_underscores", "--dashes--", "___", "UPPER lower", "x" * 70, "",
]

COMMANDS = [
    "prefect flow-run execute",
    "python -m flows.main --channel #alerts",
    "bash -c 'echo \"hello world\" && exit 0'",
    'echo "price: \\$5" \'single $x\'',
    "line one \\\n line two",
    "carriage\rreturn",
    "a\\ b c\\\\d",
    'mixed "dq \\"inner\\" end" \'sq\'',
    "tabs\there\tand  spaces",
    "unicode ünïcödé 🚀",
    "# only a hash",
    "trailing-hash#",
    "",
]


def pick(rng, items):
    return items[rng.randrange(len(items))]


def text(rng):
    parts = [pick(rng, SCRIPTS) for _ in range(rng.randint(1, 3))]
    return pick(rng, [" ", "-", "_", "", " — "]).join(parts)


def object_name(rng, fallback):
    """A flow's or deployment's name: Prefect refuses `/ % & > <` in them."""
    return "".join(c for c in text(rng) if c not in "/%&><") or fallback


def label_key(rng):
    return pick(rng, [
        "team", "Team Name", "example.com/owner", "app.kubernetes.io/component", "cost center",
        "a" * 70, "prefix.example.com/" + "b" * 60, "ünïcode/ключ", "x.y/z_1-2",
    ])


def scalar(rng):
    return pick(rng, [
        text(rng), rng.randint(-5, 10**6), round(rng.uniform(-1e3, 1e3), rng.randint(0, 6)),
        1e-05, 1e21, 0.1, True, False, None, "", "0", "None",
    ])


def env(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return None
    if kind == 1:
        return {f"VAR_{i}": scalar(rng) for i in range(rng.randint(0, 4))}
    items = []
    for i in range(rng.randint(0, 4)):
        if rng.random() < 0.3:
            items.append({"name": f"SECRET_{i}", "valueFrom": {"secretKeyRef": {"name": "s", "key": f"k{i}"}}})
        else:
            items.append({"name": f"LIST_{i}", "value": str(scalar(rng))})
    return items if kind < 4 else {"ONLY": text(rng)}


def name_variable(rng):
    return pick(rng, [
        None, "", text(rng), "{{ ctx.flow_run.name }}-job", "{{ ctx.flow.name }}",
        "{{ ctx.flow_run.run_count }}", "{{ ctx.flow_run.flow_version }}",
        "{{ ctx.flow_run.state_name }}-x", "{{ ctx.flow_run.tags }}",
        "n" * rng.choice([40, 54, 55, 56, 63, 70]), "0", "{{ ctx.flow_run.parameters.n }}",
    ])


def job_variables(rng, schema):
    """Variables as a deployment or run has them: valid against the pool's schema (Prefect's
    server checks them when they are set), but for one case in thirty."""
    import jsonschema

    properties = schema.get("properties", {})
    variables = {}
    for key in rng.sample(sorted(properties), k=rng.randint(0, min(6, len(properties)))):
        for _ in range(20):
            value = variable_value(rng, key)
            try:
                jsonschema.validate(value, {**properties[key], "definitions": schema.get("definitions", {})})
                break
            except jsonschema.ValidationError:
                if rng.random() < 1 / 30:
                    break
        variables[key] = value
    if rng.random() < 0.3:
        variables[f"env.DOTTED_{rng.randint(0, 9)}"] = text(rng)
    if rng.random() < 0.1:
        variables["labels.team"] = text(rng)
    if rng.random() < 0.05:
        # A Job manifest of the deployment's own (the agent uses it; Prefect ignores it).
        manifest = json.loads(json.dumps(STOCK_MANIFEST))
        manifest["metadata"]["labels"] = {"x": "y"}
        variables["job_manifest"] = manifest
    elif rng.random() < 0.02:
        variables["job_manifest"] = {"not": "a Job"}
    return variables


def variable_value(rng, key):
    if key == "env":
        return env(rng)
    if key in ("labels", "annotations"):
        return pick(rng, [None, {label_key(rng): str(scalar(rng)) for _ in range(rng.randint(0, 3))}, {"n": 1}])
    if key == "name":
        return name_variable(rng)
    if key == "command":
        return pick(rng, COMMANDS + [None])
    if key == "namespace":
        return pick(rng, ["default", "jobs", "Prefect Jobs", "", None])
    if key == "image":
        return pick(rng, [None, "python:3.12", "registry.example.com/etl:1.0", "busybox"])
    if key == "image_pull_policy":
        return pick(rng, ["Always", "IfNotPresent", "Never", None])
    if key in ("cpu_request", "cpu_limit"):
        return pick(rng, [None, "500m", "1", 2, "0.5"])
    if key in ("memory_request", "memory_limit"):
        return pick(rng, [None, "512Mi", "1Gi", "2G"])
    if key in ("backoff_limit", "finished_job_ttl", "pod_watch_timeout_seconds", "job_watch_timeout_seconds", "gpu"):
        return pick(rng, [None, 0, 1, 3, 600, "2"])
    if key == "stream_output":
        return pick(rng, [True, False, None])
    if key == "service_account_name":
        return pick(rng, [None, "prefect-runner", ""])
    if key == "cluster_config":
        return None
    return pick(rng, [None, text(rng), rng.randint(0, 9)])


def pool_template(rng, stock):
    """The stock template, or one changed as pool owners change it."""
    template = json.loads(json.dumps(stock))
    kind = rng.randrange(6)
    if kind == 0:
        return {}
    if kind == 1:
        return template
    properties = template["variables"]["properties"]
    manifest = template["job_configuration"]["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    if kind in (2, 5):
        # Defaults of the pool's own.
        properties["image"]["default"] = "registry.example.com/base:2"
        properties["env"]["default"] = {"POOL_DEFAULT": "pool", "DOTTED_1": "pool-dotted"}
        properties["labels"]["default"] = {"pool": "yes"}
        properties["cpu_request"]["default"] = pick(rng, [None, "250m"])
    if kind in (3, 5):
        # A variable of its own, used in the manifest, and a sidecar.
        properties["team"] = {"type": "string", "default": "data"}
        properties["gpu"] = {"type": "integer", "default": pick(rng, [0, 1, None])}
        manifest["metadata"]["labels"] = {"team": "{{ team }}", "fixed": "yes"}
        container["env"] = [{"name": "TEAM", "value": "{{ team }}"}, {"name": "GPUS", "value": "{{ gpu }}"}]
        manifest["spec"]["template"]["spec"]["containers"].append(
            {"name": "sidecar", "image": "busybox", "args": ["sleep", "infinity"]}
        )
    if kind == 4:
        # A fixed name and command in the manifest itself.
        manifest["metadata"]["generateName"] = pick(rng, ["fixed-", "{{ name }}-", "team-{{ name }}-"])
        container["args"] = pick(rng, [["python", "main.py"], "{{ command }}", "prefect flow-run execute"])
        container["env"] = [{"name": "HARD", "value": "coded"}, {"name": "PREFECT__FLOW_RUN_ID", "value": "template"}]
        manifest["spec"]["template"]["metadata"] = {"labels": {"pod-only": "yes"}, "annotations": {"a": "b"}}
    return template


def case(rng, stock):
    flow_id, run_id, deployment_id, pool_id = (str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(4))
    has_pool = rng.random() < 0.85
    template = pool_template(rng, stock) if has_pool else {}
    schema = (template or stock)["variables"]
    has_deployment = rng.random() < 0.8
    flow_run = {
        "id": run_id,
        "name": text(rng) or "run",
        "flow_id": flow_id,
        "deployment_id": deployment_id if has_deployment else None,
        "work_queue_name": "default",
        "work_pool_name": "k8s" if has_pool else None,
        "tags": [text(rng) for _ in range(rng.randint(0, 2))],
        "parameters": {"n": rng.randint(0, 3), "label": text(rng)},
        "run_count": rng.randint(0, 3),
        "flow_version": pick(rng, [None, "1.0", "abc123"]),
        "job_variables": job_variables(rng, schema) if rng.random() < 0.6 else {},
        "state_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }
    result = {
        "flow_run": flow_run,
        "flow": {"id": flow_id, "name": object_name(rng, "flow")},
        "agent": AGENT,
    }
    if has_deployment:
        result["deployment"] = {
            "id": deployment_id,
            "name": object_name(rng, "deployment"),
            "updated": "2026-11-20T08:15:30.123456Z",
            "job_variables": job_variables(rng, schema),
        }
    if has_pool:
        result["work_pool"] = {"id": pool_id, "name": "k8s", "base_job_template": template}
    return result


def render_all(cases):
    """Prefect's Job for each case, or the error it raised, under the worker's settings (see
    main). All cases share them, so these are computed once: the settings' environment, and an
    API client (not used: the cases have no block placeholders)."""
    from prefect.client.orchestration import get_client
    from prefect.workers.base import BaseJobConfiguration

    async def render():
        base_environment = BaseJobConfiguration._base_environment()
        BaseJobConfiguration._base_environment = classmethod(lambda cls: dict(base_environment))
        client = get_client()
        results = []
        for case_ in cases:
            try:
                job = await prefect_job.job_manifest(case_, AGENT["name"], client, manifest_variable=True)
                results.append({"prefect": job})
            except Exception as error:  # Prefect refused the input: the agent must refuse it too.
                results.append({"error": f"{type(error).__name__}: {error}"})
        return results

    return asyncio.run(render())


def slugs(first, last):
    """prefect-kubernetes' own slug functions on `a<c>b` for every code point c, and c's
    Unicode category in this Python's database (`Cn`: not assigned in its Unicode version)."""
    import unicodedata

    from prefect_kubernetes.utilities import _slugify_label_value, _slugify_name

    return {
        cp: [_slugify_name(f"a{chr(cp)}b"), _slugify_label_value(f"a{chr(cp)}b"), unicodedata.category(chr(cp))]
        for cp in range(first, last + 1)
        if not 0xD800 <= cp <= 0xDFFF
    }


def main():
    if sys.argv[1] == "--slugs":
        print(json.dumps(slugs(int(sys.argv[2], 16), int(sys.argv[3], 16))))
        return
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    # The worker's settings before Prefect is imported: imported first, it would settle on
    # settings of its own (an ephemeral server) that the real worker does not have.
    with prefect_job.worker_settings(AGENT["api_url"]):
        from prefect_kubernetes.worker import KubernetesWorker

        stock = KubernetesWorker.get_default_base_job_template()
        STOCK_MANIFEST.update(stock["job_configuration"]["job_manifest"])
        rng = random.Random(seed)
        cases = [case(rng, stock) for _ in range(count)]
        results = render_all(cases)
    print(json.dumps({"cases": [{"case": c, **r} for c, r in zip(cases, results)]}))


if __name__ == "__main__":
    main()
