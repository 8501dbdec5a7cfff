#!/usr/bin/env python3
"""The oracle for the stock plugin: the Job manifest Prefect's own Kubernetes worker builds.

Reads a case (the file `agent render --flow-run` reads, plus an `agent` object with the
worker's name and API URL) and prints, as JSON, the manifest prefect-kubernetes makes with the
same calls its worker makes: merge deployment and flow run job variables, then
`KubernetesWorkerJobConfiguration.from_template_and_values` and `prepare_for_flow_run`.

Usage (with the project's venv, .venv/bin/python):
  prefect_job.py CASE.json...   prints {"CASE.json": manifest, ...}
  prefect_job.py --meta         prints Prefect's version and the image its worker defaults to
"""
import asyncio
import json
import os
import sys
import tempfile


def main() -> None:
    if sys.argv[1:] == ["--meta"]:
        import prefect
        from prefect.utilities.dockerutils import get_prefect_image_name

        from prefect.client.schemas.objects import Flow, FlowRun

        ids = {"id": "00000000-0000-0000-0000-000000000001", "name": "n"}
        flow_run = FlowRun(flow_id="00000000-0000-0000-0000-000000000002", **ids).model_dump(mode="json")
        flow = Flow(**ids).model_dump(mode="json")
        print(json.dumps({
            "version": prefect.__version__,
            "default_image": get_prefect_image_name(),
            # The fields a templated Job name sees (`{{ ctx.flow_run.* }}`), with their defaults.
            "flow_run_defaults": {k: v for k, v in flow_run.items() if k not in ("id", "name", "flow_id")},
            "flow_defaults": {k: v for k, v in flow.items() if k not in ("id", "name")},
        }))
        return
    print(json.dumps({path: manifest_for(path) for path in sys.argv[1:]}, indent=1))


def manifest_for(path: str) -> dict:
    return render_case(json.load(open(path)))


def render_case(case: dict) -> dict:
    """The manifest for a case (a dict as `manifest_for` reads from a file)."""
    agent = case.get("agent", {})
    with worker_settings(agent.get("api_url")):
        return asyncio.run(job_manifest(case, agent.get("name", "agent")))


def worker_settings(api_url):
    """The worker's settings, which become the flow run's base environment: only its API URL."""
    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        del os.environ[key]
    # An empty profile: Prefect's default one would add its own settings to the env.
    profiles = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    profiles.write('active = "oracle"\n[profiles.oracle]\n')
    profiles.close()
    os.environ["PREFECT_PROFILES_PATH"] = profiles.name
    # Settings are cached per process: give each case its own API URL explicitly.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api_url})


async def job_manifest(case: dict, worker_name: str, client=None, manifest_variable=False) -> dict:
    """Prefect's Job for the case. With `manifest_variable`, a `job_manifest` job variable that
    is a Job replaces the template's manifest first, as the agent does (a documented
    difference; Prefect itself ignores the variable), so that such cases are compared in full."""
    from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    flow_run = FlowRun.model_validate(case["flow_run"])
    flow = Flow.model_validate(case["flow"])
    deployment = None
    if case.get("deployment"):
        deployment = DeploymentResponse.model_validate({"flow_id": flow.id, **case["deployment"]})
    work_pool = None
    template = KubernetesWorker.get_default_base_job_template()
    if case.get("work_pool"):
        pool = dict(case["work_pool"])
        if pool.get("base_job_template"):
            template = pool["base_job_template"]
        pool["base_job_template"] = template
        pool.setdefault("type", "kubernetes")
        work_pool = WorkPool.model_validate(pool)

    # As BaseJobConfiguration.resolve_for_flow_run merges them.
    deployment_vars = (deployment.job_variables if deployment else None) or {}
    flow_run_vars = dict(flow_run.job_variables or {})
    job_variables = {**deployment_vars}
    if isinstance(job_variables.get("env"), dict):
        job_variables["env"] = dict(job_variables["env"])
        job_variables["env"].update(flow_run_vars.pop("env", {}))
    job_variables.update(flow_run_vars)
    manifest = job_variables.get("job_manifest")
    if manifest_variable and isinstance(manifest, dict) and manifest.get("kind") == "Job":
        template = json.loads(json.dumps(template))
        template["job_configuration"]["job_manifest"] = job_variables.pop("job_manifest")

    configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
        base_job_template=template, values=job_variables, client=client
    )
    configuration.prepare_for_flow_run(
        flow_run=flow_run, deployment=deployment, flow=flow, work_pool=work_pool, worker_name=worker_name
    )
    manifest = configuration.job_manifest
    # The profiles path is the oracle's own setting (see main), not the worker's: drop it.
    for container in manifest["spec"]["template"]["spec"]["containers"]:
        if "env" in container:
            container["env"] = [e for e in container["env"] if e.get("name") != "PREFECT_PROFILES_PATH"]
    return manifest


if __name__ == "__main__":
    main()
