#!/usr/bin/env python3
"""Drives the emulator with kubernetes_asyncio, the client Prefect's Kubernetes worker uses, the
way the worker does: create a Job, read it, list and watch its pods, read the log, delete it
(Foreground), and hit a validation error. Prints what it saw as JSON for the Rust test to check.

Usage: client_check.py KUBECONFIG
"""
import asyncio
import json
import sys

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException


JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"generateName": "py-job-", "labels": {"from": "python"}},
    "spec": {
        "backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "prefect-job", "image": "busybox"}]}},
    },
}


async def main(kubeconfig: str) -> dict:
    await config.load_kube_config(config_file=kubeconfig)
    seen: dict = {}
    async with client.ApiClient() as api:
        batch = client.BatchV1Api(api)
        core = client.CoreV1Api(api)
        job = await batch.create_namespaced_job("default", JOB)
        name = job.metadata.name
        seen["created"] = name
        seen["read"] = (await batch.read_namespaced_job(name, "default")).metadata.uid == job.metadata.uid

        phases = []
        w = watch.Watch()
        async for event in w.stream(core.list_namespaced_pod, namespace="default",
                                    label_selector=f"job-name={name}", timeout_seconds=10):
            phase = event["object"].status.phase
            if not phases or phases[-1] != phase:
                phases.append(phase)
            if phase in ("Succeeded", "Failed"):
                w.stop()
        seen["pod_phases"] = phases

        pods = await core.list_namespaced_pod("default", label_selector=f"job-name={name}")
        pod = pods.items[0].metadata.name
        seen["log"] = await core.read_namespaced_pod_log(pod, "default", container="prefect-job")

        await batch.delete_namespaced_job(name, "default", propagation_policy="Foreground", grace_period_seconds=0)
        for _ in range(200):
            try:
                await batch.read_namespaced_job(name, "default")
            except ApiException as e:
                seen["after_delete"] = e.status
                break
            await asyncio.sleep(0.02)
        seen["pods_after_delete"] = len((await core.list_namespaced_pod("default", label_selector=f"job-name={name}")).items)

        bad = json.loads(json.dumps(JOB))
        bad["metadata"] = {"name": "x" * 70}
        try:
            await batch.create_namespaced_job("default", bad)
        except ApiException as e:
            body = json.loads(e.body)
            seen["invalid"] = {"status": e.status, "reason": body["reason"], "field": body["details"]["causes"][0]["field"]}
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
