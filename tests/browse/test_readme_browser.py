"""The outputs-index READMEs as people see them: Markdown rendered by GitHub's own renderer
(cmark-gfm, the `cmarkgfm` package), styled by GitHub's stylesheet (npm
`github-markdown-css`, installed by `scripts/setup.sh --dev` into .venv/npm), laid out by
a real headless Chromium (Debian's `chromium`) at GitHub's 1012-px page width, with
1,000 runs in one model folder.

The page measures itself (a script in the harness page, never in a README): no table
wider than the page, at most 7 columns, every chart loaded and drawn at least 600 px
wide, links short labels, no raw gs:// or file:// text. Screenshots are kept in
build/test-artifacts/ (gitignored): open them to see what a reviewer sees.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from run_records import make_record

from render.browse.leaderboard import Boards
from render.browse.sync import write_readme
from render.record.evaluation import Evaluation
from render.record.index import write_entry
from render.record.results import Leaderboard
from render.record.runrecord import Metrics, RunRecord

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
CSS = REPO / ".venv/npm/node_modules/github-markdown-css/github-markdown-light.css"
PAGE_WIDTH = 1012  # GitHub's repository page: the README box
RUNS = 1000
SETUP = "run `bash scripts/setup.sh --dev` (it installs what this test needs)"

# Runs in the harness page after everything (the 1,000 charts included) has loaded; it
# writes what it measured into the page, which `chromium --dump-dom` prints.
MEASURE = """
<script>
window.addEventListener("load", () => {
  const body = document.getElementById("readme");
  const tables = [...body.querySelectorAll("table")];
  const imgs = [...body.querySelectorAll("img")];
  const text = body.innerText;
  const out = {
    page: document.documentElement.scrollWidth,
    body: body.getBoundingClientRect().width,
    tables: tables.map(t => ({
      width: t.getBoundingClientRect().width, scroll: t.scrollWidth, client: t.clientWidth,
      columns: Math.max(...[...t.rows].map(r => r.cells.length)), rows: t.rows.length})),
    images: imgs.map(i => ({src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0,
                            width: i.getBoundingClientRect().width})),
    longest_link: Math.max(0, ...[...body.querySelectorAll("a")].map(a => a.innerText.length)),
    raw_uri: /(gs|file):\\/\\//.test(text),
  };
  const pre = document.createElement("pre");
  pre.id = "ftops-result";
  pre.style.display = "none";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"no headless Chromium on PATH: {SETUP}")


def to_html(markdown: str, folder: Path, name: str) -> Path:
    """The page GitHub would show for a README: cmark-gfm's HTML in GitHub's CSS."""
    try:
        import cmarkgfm
    except ImportError:
        pytest.fail(f"cmarkgfm (GitHub's Markdown renderer) is not installed: {SETUP}")
    if not CSS.is_file():
        pytest.fail(f"GitHub's stylesheet is missing ({CSS}): {SETUP}")
    body = cmarkgfm.github_flavored_markdown_to_html(markdown)
    page = folder / f"{name}.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<link rel='stylesheet' href='{CSS.as_uri()}'>"
        "<style>body{margin:0;background:#fff}"
        f".markdown-body{{box-sizing:border-box;width:{PAGE_WIDTH}px;padding:32px}}</style>"
        f"</head><body><article class='markdown-body' id='readme'>{body}</article>"
        f"{MEASURE}</body></html>", encoding="utf-8")
    return page


def browse(page: Path, shot: Path) -> dict[str, Any]:
    """Load the page in headless Chromium: what it measured, and a screenshot."""
    url = page.as_uri()
    # the virtual time budget lets the load event (and the measuring script) run before
    # Chromium dumps the DOM
    common = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--virtual-time-budget=30000",
              "--allow-file-access-from-files", f"--window-size={PAGE_WIDTH},1600"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True,
                         timeout=300, check=False)
    match = re.search(r'<pre id="ftops-result"[^>]*>(.*?)</pre>', dom.stdout, re.S)
    assert match, f"the page measured nothing: {dom.stderr[-2000:]}"
    shot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=300,
                   check=True)
    assert shot.stat().st_size > 10_000, "an empty screenshot"
    result: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return result


def runs() -> list[RunRecord]:
    """1,000 runs of one model (a sweep of 25 experiments, 40 runs each) and a few of a
    second model, with evaluations, loss curves and real-looking links."""
    out = []
    for i in range(RUNS):
        exp = f"sft_lora_r{8 * (1 + i % 5)}_lr{(i // 5) % 5 + 1}e-4_v1"
        status = "failed" if i % 17 == 0 else "succeeded"
        steps = 300 + 10 * (i % 50)
        out.append(make_record(
            f"{i:04d}a{i * 7919 % 100000:05d}", experiment=exp,
            experiment_path=f"experiments/alpaca/llama-3.1-8b/{exp}.yaml",
            status=status, exit_code=1 if status == "failed" else 0,
            owner=("jk", "ana", "ml-platform")[i % 3],
            started_at=f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
            duration_s=3600.0 + 97 * i, nodes=1 + i % 2, gpus_per_node=8,
            gpu_type="h100-80gb", mode="cluster",
            hyperparameters={"finetuning_type": "lora", "learning_rate": ((i // 5) % 5 + 1) * 1e-4,
                             "num_train_epochs": 3.0, "lora_rank": 8 * (1 + i % 5),
                             "per_device_train_batch_size": 4},
            metrics=Metrics(final_train_loss=0.5 + (i % 37) / 50, best_train_loss=0.45,
                            eval_loss=0.6 + (i % 41) / 40, total_steps=steps),
            artifacts_uri=f"gs://my-project-llm/experiments/alpaca/llama-3.1-8b/{exp}/r{i}",
            artifacts_url="https://console.cloud.google.com/storage/browser/my-project-llm/"
                          f"experiments/alpaca/llama-3.1-8b/{exp}/r{i}",
            tracker_url=f"https://mlflow.example.com/#/experiments/3/runs/{i:032x}",
            loss_points=[[s * steps // 64, round(2.5 * 0.97 ** s + (i % 7) / 20, 4)]
                         for s in range(1, 65)],
            evaluations={"holdout": Evaluation(
                "succeeded", 0, "alpaca_test", 500,
                {"bleu-4": 10 + (i % 23), "rouge-l": 20 + (i % 19), "rouge-1": 30.0,
                 "rouge-2": 9.5, "runtime": 120.0},
                f"gs://my-project-llm/experiments/alpaca/llama-3.1-8b/{exp}/r{i}/eval/"
                "holdout/generated_predictions.jsonl")} if status == "succeeded" else {},
        ))
    for i in range(3):
        out.append(make_record(f"q{i}", model="qwen2.5-7b", experiment="sft_full_v1",
                               experiment_path="experiments/alpaca/qwen2.5-7b/sft_full_v1.yaml",
                               metrics=Metrics(eval_loss=0.9 + i / 10),
                               loss_points=[[s, 2.0 / s] for s in range(1, 30)]))
    return out


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser") / "outputs-index"
    for r in runs():
        write_entry(root, r)
    boards = Boards(by_dataset={"alpaca": Leaderboard("holdout/bleu-4", "higher",
                                                      "experiments/alpaca/dataset.yaml")})
    write_readme(root, boards)
    return root


def check_page(result: dict[str, Any], *, charts: int = 0) -> None:
    assert result["page"] <= PAGE_WIDTH, "the page scrolls sideways"
    for t in result["tables"]:
        assert t["columns"] <= 7, t
        assert t["scroll"] <= t["client"] + 1, f"a table wider than the page: {t}"
        assert t["width"] <= PAGE_WIDTH - 64, t
    assert result["longest_link"] <= 40, "a link shows a raw address"
    assert not result["raw_uri"], "gs:// or file:// text on the page"
    images = result["images"]
    assert all(i["ok"] for i in images), [i for i in images if not i["ok"]][:3]
    assert sum(i["width"] >= 600 for i in images) >= charts


def test_model_readme_with_1000_runs(index: Path) -> None:
    folder = index / "alpaca/llama-3.1-8b"
    text = (folder / "README.md").read_text(encoding="utf-8")
    result = browse(to_html(text, folder, "readme"), ARTIFACTS / "readme-model-1000-runs.png")
    # the charts of the 30 most recent runs, each drawn 640 px wide
    check_page(result, charts=30)
    assert len(result["images"]) == 30
    [table] = result["tables"]
    assert table["rows"] == RUNS + 1
    # the charts as the reader finds them below the table (a page of their own, so the
    # screenshot shows them)
    charts = text[text.index("## Loss curves"):]
    shown = browse(to_html(charts, folder, "charts"), ARTIFACTS / "readme-model-charts.png")
    assert len(shown["images"]) == 30 and all(i["width"] == 640 for i in shown["images"])


def test_dataset_leaderboard(index: Path) -> None:
    page = to_html((index / "alpaca/README.md").read_text(encoding="utf-8"), index / "alpaca",
                   "readme")
    result = browse(page, ARTIFACTS / "readme-dataset-leaderboard.png")
    check_page(result, charts=1)  # the top runs, overlaid
    leaderboard = result["tables"][0]
    assert leaderboard["rows"] == 51  # the top 50 and the header


def test_map_readme(index: Path) -> None:
    page = to_html((index / "README.md").read_text(encoding="utf-8"), index, "readme")
    result = browse(page, ARTIFACTS / "readme-map.png")
    check_page(result)
    assert [t["rows"] for t in result["tables"]] == [2, 3]  # 1 dataset; 2 models
