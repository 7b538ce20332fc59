"""The real LLaMA Board in a real browser: Board -> import -> export -> Board.

`llamafactory-cli webui` runs on 127.0.0.1 in a scratch folder; Debian's chromium,
driven by selenium, presses its buttons. The Board's own "Save arguments" writes what
its widgets hold, so reading a file it saved is reading the fields back.

1. A hand-written state is loaded into the Board and saved by it: S0, a genuine Board
   file (values as the widgets hold them).
2. `ftops import S0` -> an experiment (lint-clean); `ftops export --board` -> F.
3. F is loaded into a fresh page. The Board's change handlers fire after the first load
   (the stage changed: the dataset is cleared; the model changed: the template is reset
   to the model's default), which this test sees; a second load restores them, as
   export tells the user to do. The Board saves again: S1.
4. S1 equals S0 on every field, except the ones import said it could not keep (values
   that never reach training), which come back at the Board's defaults.

Needs chromium and chromium-driver (Debian packages; `scripts/setup.sh --dev` installs
them as root). Without them the test fails and says so: it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lint_harness import make_workspace

from render.cli import main
from render.propose import board

pytestmark = pytest.mark.slow

DATASET_INFO = Path(__file__).resolve().parent / "data" / "llamafactory-0.9.5" / "data" / \
    "dataset_info.json"
STARTUP_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def board_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`llamafactory-cli webui` on 127.0.0.1; yields (url, its working folder)."""
    work = tmp_path_factory.mktemp("board")
    port = _free_port()
    cli = Path(sys.executable).with_name("llamafactory-cli")
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "BROWSER": "true"}  # the Board asks to open a browser: make that a no-op
    for key in ("USE_MCA", "ALLOW_EXTRA_ARGS", "USE_RAY", "USE_KT", "USE_V1"):
        env.pop(key, None)
    log = (work / "webui.log").open("wb")
    proc = subprocess.Popen([str(cli), "webui"], cwd=work, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_S
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("llamafactory-cli webui did not start:\n"
                            + (work / "webui.log").read_text(errors="replace")[-3000:])
            time.sleep(1)
        yield url, work
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.fail("this test needs Debian's chromium and chromium-driver: run "
                    "`bash scripts/setup.sh --dev` as root, or apt-get install chromium "
                    "chromium-driver")
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,4000"):
        opts.add_argument(arg)
    opts.binary_location = chromium
    drv = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


class BoardPage:
    """The Train tab, driven as a person would."""

    def __init__(self, drv: Any, url: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        self.drv, self.by, self.ec, self.wait_cls = drv, By, ec, WebDriverWait
        drv.get(url)
        self._wait(ec.element_to_be_clickable(
            (By.XPATH, "//button[normalize-space()='Load arguments']")), 90)
        time.sleep(2)  # the page's own load event fills the defaults

    def _wait(self, cond: Any, timeout: float = 60) -> Any:
        from selenium.common.exceptions import TimeoutException

        try:
            return self.wait_cls(self.drv, timeout).until(cond)
        except TimeoutException:
            shot = Path(os.environ.get("FTOPS_BOARD_SCREENSHOT", "/tmp/ftops-board-test.png"))
            self.drv.save_screenshot(str(shot))
            raise AssertionError(f"the Board did not get there in {timeout} s; its page "
                                 f"is in {shot}") from None

    def _input(self, label: str) -> Any:
        return self.drv.find_element(self.by.XPATH, f"//input[@aria-label='{label}']")

    def set_config_path(self, value: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self._input("Config path")
        self.drv.execute_script("arguments[0].scrollIntoView()", box)
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(value, Keys.ENTER)
        box.send_keys(Keys.TAB)
        self._wait(lambda d: self._input("Config path").get_attribute("value") == value, 20)

    def status(self) -> str:
        """The Train tab's message line (its output box)."""
        box = self.drv.find_elements(self.by.XPATH, "//div[contains(@class, 'prose')][.//p["
                                     "starts-with(normalize-space(), 'Ready.') or contains("
                                     "., 'Arguments have been') or contains(., 'Please') or "
                                     "contains(., 'llamafactory-cli')]]")
        return " ".join(b.text for b in box)

    def _click(self, label: str) -> None:
        button = self.drv.find_element(self.by.XPATH, f"//button[normalize-space()='{label}']")
        self.drv.execute_script("arguments[0].scrollIntoView()", button)
        button.click()

    def _press(self, label: str, done: str) -> None:
        if done in self.status():  # the same message again would not show: change it first
            self._click("Preview command")
            self._wait(lambda d: done not in self.status(), 30)
        self._click(label)
        self._wait(lambda d: done in self.status())
        time.sleep(3)  # let the change handlers that follow a load run

    def load(self, path: str) -> None:
        self.set_config_path(path)
        self._press("Load arguments", "Arguments have been restored.")

    def save(self, name: str) -> None:
        self.set_config_path(name)
        self._press("Save arguments", "Arguments have been saved at")

    def dropdown(self, label: str) -> str:
        return str(self._input(label).get_attribute("value"))

    def chosen(self, label: str) -> list[str]:
        """The names a multiselect dropdown holds (its tokens)."""
        tokens = self.drv.find_elements(
            self.by.XPATH, f"//span[@data-testid='block-info' and normalize-space()='{label}']"
            "/ancestor::div[contains(@class, 'block')][1]//div[contains(@class, 'token')]"
            "/span")
        return [t.text.strip() for t in tokens]


def _start_state() -> dict[str, Any]:
    state = board.defaults()
    state.update({
        "top.model_name": "Qwen3-4B-Instruct-2507", "top.template": "qwen3",
        "top.booster": "liger_kernel", "train.training_stage": "DPO",
        "train.dataset": ["dpo_en_demo"], "train.learning_rate": "2e-5",
        "train.num_train_epochs": "2.0", "train.max_samples": "5000",
        "train.cutoff_len": 1024, "train.batch_size": 4,
        "train.gradient_accumulation_steps": 4, "train.logging_steps": 10,
        "train.save_steps": 200, "train.warmup_steps": 10, "train.val_size": 0.05,
        "train.lora_rank": 16, "train.lora_alpha": 32, "train.lora_dropout": 0.05,
        "train.lora_target": "q_proj,v_proj", "train.pref_beta": 0.2,
        "train.extra_args": json.dumps({"optim": "adamw_torch", "warmup_ratio": 0.05}),
        "train.ds_stage": "3",
        # values that never reach training: import cannot keep them
        "train.galore_rank": 64, "train.project": "my-board-project",
    })
    return state


def _same(eid: str, a: Any, b: Any) -> bool:
    if eid == "train.extra_args":
        return bool(json.loads(a) == json.loads(b))
    return board.same_value(board.table().elements[eid], a, b)


def test_board_import_export_board(board_server: tuple[str, Path], browser: Any,
                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, work = board_server
    configs = work / "llamaboard_config"
    configs.mkdir(exist_ok=True)
    (configs / "start.yaml").write_text(yaml.safe_dump(_start_state()))

    # 1. the Board's own file of that state
    page = BoardPage(browser, url)
    page.load("start.yaml")
    page.load("start.yaml")
    page.save("s0.yaml")
    s0 = yaml.safe_load((configs / "s0.yaml").read_text())
    assert set(s0) == set(board.table().saved)
    assert s0["train.dataset"] == ["dpo_en_demo"] and s0["top.template"] == "qwen3"

    # 2. into git and out again
    root = make_workspace(tmp_path)
    assert main(["--repo", str(root), "import", str(configs / "s0.yaml"), "--owner", "team",
                 "--dataset-info", str(DATASET_INFO), "--data-uri", "hf://llamafactory/demo",
                 "--data-revision", "main"]) == 0
    out, err = capsys.readouterr()
    exp = next(line.split()[1] for line in out.splitlines() if line.endswith("(lints clean)"))
    lost = {eid for eid in board.lost_fields(s0)
            if eid != "train.dataset_dir" and not _same(eid, s0[eid], board.defaults()[eid])}
    assert lost == {"train.galore_rank", "train.project"}
    for eid in lost:
        assert f"not kept: {eid} = " in err
    export = tmp_path / "export"
    assert main(["--repo", str(root), "export", exp, "--board", "--out", str(export)]) == 0
    out, err = capsys.readouterr()
    assert "the Board cannot represent" not in err
    exported = export / f"{Path(exp).stem}.yaml"

    # 3. a fresh page: the first load trips the change handlers, the second restores
    page = BoardPage(browser, url)
    page.load(str(exported))
    assert page.dropdown("Chat template") == "qwen3_nothink"  # the model's default
    assert page.chosen("Dataset") == []  # cleared by the stage change
    page.load(str(exported))
    assert page.dropdown("Chat template") == "qwen3"
    assert page.chosen("Dataset") == ["dpo_en_demo"]
    page.save("s1.yaml")
    s1 = yaml.safe_load((configs / "s1.yaml").read_text())

    # 4. the identity on the Board's fields, but for what import said it dropped
    defaults = board.defaults()
    differ = {eid for eid in s0 if not _same(eid, s0[eid], s1[eid])}
    assert differ == lost | {"train.dataset_dir"}, {e: (s0[e], s1[e]) for e in differ}
    for eid in lost:
        assert _same(eid, s1[eid], defaults[eid])
    assert s1["train.dataset_dir"] == str(export.resolve())
    assert json.loads((export / "dataset_info.json").read_text())["dpo_en_demo"]["ranking"]
