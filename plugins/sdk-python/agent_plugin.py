"""Write agent plugins in Python: a plugin is one plain function.

    from agent_plugin import Customizer, Rejected, plugin

    @plugin
    def customize(request: dict, job: dict) -> dict:
        job["metadata"].setdefault("labels", {})["team"] = request["config"].get("team", "data")
        return job

`request` is the WIT `request` as plain dicts and lists (JSON text fields already parsed,
pairs as dicts), `job` the `batch/v1` Job as a dict. Return the Job; raise `Rejected(reason)`
to refuse the run (Prefect marks it FAILED with the reason); any other exception is a fault
(CRASHED, with the exception named). `log(level, message)` writes to the agent's log.

Importing `Customizer` into the app module is what exports the plugin: componentize-py looks
for a class of that name there. Build with:

    componentize-py -d wit -w plugin componentize app -p . -p plugins/sdk-python -o plugin.wasm
"""

import json
import traceback

from componentize_py_types import Err
from wit_world.imports import log as _log
from wit_world.imports import types

__all__ = ["Customizer", "Rejected", "log", "plugin"]

LEVELS = {
    "trace": _log.Level.TRACE,
    "debug": _log.Level.DEBUG,
    "info": _log.Level.INFO,
    "warn": _log.Level.WARN,
    "error": _log.Level.ERROR,
}


class Rejected(Exception):
    """Policy: this run must not run as asked. It is marked FAILED with this reason."""


_customize = None


def plugin(function):
    """Makes `function(request, job) -> job` this component's plugin."""
    global _customize
    _customize = function
    return function


def log(level: str, message: str) -> None:
    """Writes `message` to the agent's log under the plugin's name ("info", "warn", ...)."""
    _log.log(LEVELS[level], message)


def request_dict(request) -> dict:
    """The WIT request as plain data: what `customize` receives."""
    run = request.flow_run
    agent = request.agent
    return {
        "flow_run": {
            "id": run.id,
            "name": run.name,
            "flow_id": run.flow_id,
            "flow_name": run.flow_name,
            "deployment_id": run.deployment_id,
            "deployment_name": run.deployment_name,
            "deployment_updated": run.deployment_updated,
            "work_pool_id": run.work_pool_id,
            "work_pool_name": run.work_pool_name,
            "work_queue_name": run.work_queue_name,
            "tags": list(run.tags),
            "labels": dict(run.labels),
            "parameters": json.loads(run.parameters or "{}"),
            "run_count": run.run_count,
        },
        "agent": {
            "name": agent.name,
            "namespace": agent.namespace,
            "api_url": agent.api_url,
            "api_key_secret": None
            if agent.api_key_secret is None
            else {"name": agent.api_key_secret.name, "key": agent.api_key_secret.key},
            "service_account_name": agent.service_account_name,
            "image_pull_secrets": list(agent.image_pull_secrets),
            "env": dict(agent.env),
            "labels": dict(agent.labels),
            "default_image": agent.default_image,
            "prefect_version": agent.prefect_version,
        },
        "job_variables": json.loads(request.job_variables or "{}"),
        "base_job_template": json.loads(request.base_job_template or "{}"),
        "job_name_suffix": request.job_name_suffix,
        "config": dict(request.config),
    }


class Customizer:
    """The export componentize-py binds: JSON text in, the plugin function, JSON text out."""

    def customize(self, request, job: str) -> str:
        if _customize is None:
            raise Err(types.Error_Fault("no function is marked @plugin"))
        try:
            job = json.loads(job)
        except ValueError as error:
            raise Err(types.Error_Fault(f"the Job the host sent is not JSON: {error}"))
        try:
            result = _customize(request_dict(request), job)
        except Rejected as rejected:
            raise Err(types.Error_Rejected(str(rejected)))
        except Exception as error:
            where = traceback.extract_tb(error.__traceback__)[-1]
            raise Err(
                types.Error_Fault(
                    f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno})"
                )
            )
        if not isinstance(result, dict):
            raise Err(types.Error_Fault(f"the plugin returned {type(result).__name__}, not the Job"))
        return json.dumps(result)
