#!/usr/bin/env python3
"""Creates what the quickstart needs on a Prefect server, through its REST API: a Kubernetes work
pool (no base job template: the stock one applies), a flow, a deployment with job variables and
three flow runs scheduled now.

Usage: quickstart_setup.py API_URL POOL
"""
import json
import sys
import urllib.request


def call(api: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def main() -> None:
    api, pool = sys.argv[1], sys.argv[2]
    call(api, "/work_pools/", {"name": pool, "type": "kubernetes"})
    flow = call(api, "/flows/", {"name": "etl-nightly"})
    deployment = call(api, "/deployments/", {
        "name": "warehouse", "flow_id": flow["id"], "work_pool_name": pool,
        "job_variables": {"image": "registry.example.com/data/etl:2026.11", "env": {"WAREHOUSE": "prod"}, "cpu_request": "500m"},
    })
    for _ in range(3):
        run = call(api, f"/deployments/{deployment['id']}/create_flow_run", {"job_variables": {"memory_request": "512Mi"}})
        print(f"created flow run {run['name']} ({run['id']})")


if __name__ == "__main__":
    main()
