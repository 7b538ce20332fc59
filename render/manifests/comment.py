"""The sticky plan comment on a pull request, with the GitHub REST API and only urllib.

`ftops pr-comment --file plan.md` finds the PR's comment that starts with the plan marker
(render.manifests.plan.MARKER) and was written by the workflow's own identity, and edits it, or
posts a new one: one plan comment per PR however many times CI runs.

The token is read from the environment (GITHUB_TOKEN) and only ever sent in the
Authorization header to the API host; it is never taken from argv nor printed.
A token that may not write (a pull request from a fork gets a read-only token: 403) is
not an error: the plan is still in the job summary, so the command warns and exits 0.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.manifests.plan import MARKER

DEFAULT_API = "https://api.github.com"
DEFAULT_AUTHOR = "github-actions[bot]"  # the login GITHUB_TOKEN writes as
MAX_BODY = 65536  # GitHub's limit on a comment body, in characters
TRUNCATED = ("\n\n… the plan is too long for a comment and was cut here; the full plan "
             "is in the workflow run's job summary.\n")
TIMEOUT_S = 30
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class PermissionDenied(FatalError):
    """The token may not write comments on this PR (HTTP 403)."""


def _request(method: str, url: str, token: str, data: Any = None) -> tuple[Any, str | None]:
    """JSON of the response and the URL of the next page (from the Link header)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FatalError(f"GitHub API URL {_strip_query(url)!r} must be http(s)")
    body = None if data is None else json.dumps(data).encode("utf-8")
    req = urllib.request.Request(url, data=body, method=method, headers={  # noqa: S310
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "ftops",
        **({"Content-Type": "application/json"} if body is not None else {}),
    })
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310
            payload = json.loads(resp.read() or b"null")
            link = resp.headers.get("Link") or ""
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read() or b"{}").get("message", "")
        except (ValueError, AttributeError):
            message = ""
        text = f"GitHub API {method} {_strip_query(url)}: HTTP {exc.code} {message}".rstrip()
        if exc.code == 403:
            raise PermissionDenied(text) from None
        raise FatalError(text) from None
    except urllib.error.URLError as exc:
        raise FatalError(f"GitHub API {method} {_strip_query(url)}: {exc.reason}") from None
    match = _NEXT.search(link)
    return payload, match.group(1) if match else None


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _same_origin(url: str, api: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(api)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def find_comment(repo: str, pr: int, token: str, api: str = DEFAULT_API,
                 author: str | None = DEFAULT_AUTHOR) -> dict[str, Any] | None:
    """The PR's first issue comment whose body starts with the marker (by `author`, when
    given), reading every page of comments."""
    url: str | None = f"{api}/repos/{repo}/issues/{pr}/comments?per_page=100"
    while url:
        page, url = _request("GET", url, token)
        if not isinstance(page, list):
            raise FatalError(f"GitHub API: unexpected comment list for {repo}#{pr}")
        for comment in page:
            if not str(comment.get("body") or "").startswith(MARKER):
                continue
            if author and (comment.get("user") or {}).get("login") != author:
                continue
            return dict(comment)
        if url and not _same_origin(url, api):  # never send the token elsewhere
            raise FatalError(f"GitHub API: pagination left {api}; refusing to follow")
    return None


def upsert_comment(repo: str, pr: int, body: str, token: str, api: str = DEFAULT_API,
                   author: str | None = DEFAULT_AUTHOR) -> str:
    """Edit the PR's plan comment, or post one; returns the comment's URL."""
    if not _REPO.match(repo):
        raise FatalError(f"repository {repo!r} is not owner/name")
    if not body.startswith(MARKER):
        body = f"{MARKER}\n{body}"
    if len(body) > MAX_BODY:
        body = body[: MAX_BODY - len(TRUNCATED)] + TRUNCATED
    api = api.rstrip("/")
    if urllib.parse.urlsplit(api).scheme not in ("http", "https"):
        raise FatalError(f"GitHub API URL {api!r} must be http(s)")
    existing = find_comment(repo, int(pr), token, api, author)
    if existing is not None:
        result, _ = _request("PATCH", f"{api}/repos/{repo}/issues/comments/{existing['id']}",
                             token, {"body": body})
    else:
        result, _ = _request("POST", f"{api}/repos/{repo}/issues/{int(pr)}/comments",
                             token, {"body": body})
    return str(result.get("html_url") or result.get("url") or "")


def pr_number(pr: int | None) -> int:
    """`pr`, or the pull request of the workflow's event (GITHUB_EVENT_PATH)."""
    if pr is not None:
        return int(pr)
    event_path = os.environ.get("GITHUB_EVENT_PATH")
    if not event_path:
        raise FatalError("no PR number: pass --pr N or run in a pull_request workflow "
                         "(GITHUB_EVENT_PATH)")
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        return int(event["pull_request"]["number"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FatalError(f"no pull_request.number in {event_path} ({exc.__class__.__name__}); "
                         "pass --pr N") from None


def append_step_summary(body: str) -> None:
    """Append the plan to the workflow run's page ($GITHUB_STEP_SUMMARY)."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        raise FatalError("--step-summary: GITHUB_STEP_SUMMARY is not set "
                         "(GitHub Actions sets it)")
    with open(summary, "a", encoding="utf-8") as fh:
        fh.write(body if body.endswith("\n") else body + "\n")


def post_plan(body: str, *, pr: int | None = None, api: str | None = None,
              author: str | None = DEFAULT_AUTHOR) -> str:
    """Post or edit the PR's plan comment with the repository and token of the workflow's
    environment (GITHUB_REPOSITORY, GITHUB_TOKEN, GITHUB_API_URL); returns its URL.
    PermissionDenied when the token may not comment (a pull request from a fork)."""
    repo = os.environ.get("GITHUB_REPOSITORY", "")
    token = os.environ.get("GITHUB_TOKEN", "")
    if not repo:
        raise FatalError("GITHUB_REPOSITORY is not set (owner/name)")
    if not token:
        raise FatalError("GITHUB_TOKEN is not set; give the step "
                         "`env: GITHUB_TOKEN: ${{ github.token }}`")
    number = pr_number(pr)
    root = api or os.environ.get("GITHUB_API_URL") or DEFAULT_API
    try:
        return upsert_comment(repo, number, body, token, root, author or None)
    except PermissionDenied as exc:
        raise PermissionDenied(f"the token may not comment on {repo}#{number} ({exc}); a "
                               "pull request from a fork gets a read-only token") from None
