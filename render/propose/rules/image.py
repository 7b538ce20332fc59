"""The training image: warn when it is named by tag only.

A tag can be pushed again; a digest (`...@sha256:<64 hex>`) names exactly one image, so
every node of a run and every rerun get the same bytes, and the run record says which.
The image workflow (.github/workflows/image.yml) proposes the digest it pushed for
k8s-base/cluster-profile.yaml. A warning, not an error: a tag still runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from render.errors import Finding
from render.propose.experiment import Experiment
from render.propose.profile import PROFILE_PATH
from render.propose.rules.context import Context

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
HINT = ("pin it by digest, <registry>/<name>@sha256:<digest> (the image workflow proposes "
        "it); a tag can be re-pushed, so reruns and restarts may not get the same image")


def is_pinned(image: str) -> bool:
    return bool(DIGEST.search(image))


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    image = exp.launch.image
    if is_pinned(image):
        return
    raw = exp.merged.get("launch")
    if isinstance(raw, dict) and isinstance(raw.get("image"), str):
        found = exp.finding(("launch", "image"), f"image {image!r} is not pinned by digest",
                            HINT, "image")
        yield Finding(found.file, found.line, found.col, found.path, found.message,
                      found.hint, found.rule, "warning")
        return
    line = _profile_line(ctx, "default_image")
    yield Finding(PROFILE_PATH.as_posix(), line, 1, "$.default_image",
                  f"default image {image!r} is not pinned by digest", HINT, "image", "warning")


def _profile_line(ctx: Context, key: str) -> int:
    try:
        text = (ctx.ws.root / PROFILE_PATH).read_text(encoding="utf-8")
    except OSError:
        return 1
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{key}:"):
            return number
    return 1
