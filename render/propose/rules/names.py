"""Names: file and folder names, and every name we will generate from them."""

from __future__ import annotations

import re
from collections.abc import Iterator

from render import k8snames
from render.errors import Finding
from render.propose import naming
from render.propose.experiment import Experiment
from render.propose.rules.context import Context
from render.record.index import KEY_PART_MAX

FILE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*_v[0-9]+")  # fullmatch: no "\n" at the end
FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    if not FILE_NAME.fullmatch(exp.name):
        suggestion = re.sub(r"[^a-z0-9_.-]+", "_", exp.name.lower()).strip("_.-") or "experiment"
        if not re.search(r"_v[0-9]+$", suggestion):
            suggestion += "_v1"
        yield exp.finding((), f"file name {exp.name + '.yaml'!r} is not allowed",
                          "lowercase [a-z0-9_.-] ending in _v<N>, e.g. "
                          f"{suggestion}.yaml", "names")
    for label, value in (("dataset", exp.dataset), ("model", exp.model)):
        if not FOLDER_NAME.fullmatch(value):
            yield exp.finding((), f"{label} folder name {value!r} is not allowed",
                              "lowercase letters, digits, '_', '.', '-'", "names")
    # Names outputs-index/ will hold: <dataset>/<model>/<experiment>__<run id>.json
    for label, value in (("experiment", exp.name), ("dataset", exp.dataset),
                         ("model", exp.model)):
        if len(value) > KEY_PART_MAX:
            yield exp.finding((), f"{label} name is {len(value)} characters; outputs-index "
                              f"entries allow at most {KEY_PART_MAX}",
                              f"shorten the {label} name", "names")
    # Names the cluster will see: the longest pod hostname of the largest index.
    jobset = naming.jobset_name(exp.name, "0" * naming.RUN_ID_LEN)
    nodes = max(exp.launch.nodes, 1)
    for name in (jobset, naming.pod_hostname(jobset, nodes - 1)):
        problem = k8snames.check_dns_label(name)
        if problem:
            yield exp.finding((), f"generated name {problem}",
                              "shorten the experiment file name", "names")
