"""Labels each Job and its pod with the cost center named by the flow run's tags.

A tag `cost-center:finance` gives the label `cost-center: finance`, so the cluster's cost
reports can split spending by team. Settings (`-c cost-center.KEY=VALUE`):

- `tag-prefix` (default `cost-center:`): the tags to read;
- `label` (default `cost-center`): the label to set;
- `default`: the cost center of runs without such a tag;
- `required` (`true`/`false`, default `false`): reject runs that name none.
"""

import re

from agent_plugin import Customizer, Rejected, log, plugin  # noqa: F401 (Customizer: the export)


@plugin
def customize(request, job):
    config = request["config"]
    prefix = config.get("tag-prefix", "cost-center:")
    label = config.get("label", "cost-center")
    named = sorted(
        {tag[len(prefix):] for tag in request["flow_run"]["tags"] if tag.startswith(prefix)}
    )
    if len(named) > 1:
        raise Rejected(f"the flow run names several cost centers ({', '.join(named)}); keep one tag {prefix}NAME")
    center = named[0] if named else config.get("default")
    if not center:
        if config.get("required", "false") == "true":
            raise Rejected(f"the flow run names no cost center: add a tag {prefix}NAME")
        return job
    value = label_value(center)
    if value != center:
        log("info", f"cost center {center!r} is labelled {value!r}")
    job.setdefault("metadata", {}).setdefault("labels", {})[label] = value
    pod = job.setdefault("spec", {}).setdefault("template", {})
    pod.setdefault("metadata", {}).setdefault("labels", {})[label] = value
    return job


def label_value(text):
    """A valid Kubernetes label value: 63 characters of [a-z0-9._-], alphanumeric at both ends."""
    value = re.sub(r"[^a-z0-9._-]+", "-", text.lower())[:63]
    return value.strip("._-")
