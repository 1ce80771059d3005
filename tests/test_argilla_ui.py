"""The Argilla web UI in a real headless Chromium: an annotator signs in, opens a dataset the pipeline's own
push code filled with SIB-200 sentences and the student's suggestions, and sees the record, the suggested
label pre-selected with its score and agent, and the pending queue. The screenshot is kept as a test artifact
(test-artifacts/argilla-ui.png) for a human to look at.

Needs the `playwright` package (it drives the system Chromium; no browser download) and Chromium itself
(`apt-get install -y --no-install-recommends chromium`, or set CHROMIUM_PATH); skipped without them."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, sib_rows
from PIL import Image

from annotators.local_server import LocalArgilla
from annotators.push import connect, ensure_dataset, push_rows
from curation.config import AnnotationConfig

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (a dev extra)")

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "argilla-ui.png"
FAILURE = ARTIFACTS / "argilla-ui-failure.png"  # what the page showed when an assertion failed
VIEWPORT = {"width": 1440, "height": 900}
DATASET = "ui-check"
AGENT = "student-round-0000"
SIB_LABELS = ["entertainment", "geography", "health", "politics", "science/technology", "sports", "travel"]
SCORES = [0.91, 0.64, 0.78]  # the student's calibrated probabilities; the UI shows them to one decimal
TIMEOUT_MS = 20_000


def find_chromium() -> str | None:
    """$CHROMIUM_PATH if it exists, else Debian's `chromium` (or Ubuntu's `chromium-browser`) on PATH."""
    if configured := os.environ.get("CHROMIUM_PATH"):
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = find_chromium()


def unit_vector(seed: int, dimensions: int = 384) -> list[float]:
    vector = np.random.default_rng(seed).standard_normal(dimensions)
    return (vector / np.linalg.norm(vector)).astype(np.float32).tolist()


@pytest.fixture(scope="module")
def pushed(local_argilla: dict) -> list[dict]:
    """Three French SIB-200 sentences in the 'ui-check' dataset, each with the student's suggestion."""
    rows = [{
        "id": f"fra_Latn/{row['index_id']}", "text": row["text"], "lang": "fra_Latn", "source": "sib200",
        "cluster": i, "round": 0, "strategy": "uncertainty", "score": round(1 - score, 2), "rank": i,
        "suggestion": row["category"], "suggestion_score": score, "probabilities": {row["category"]: score},
        "vector": unit_vector(i),
    } for i, (row, score) in enumerate(zip(sib_rows("fra_Latn", "dev", 3), SCORES))]
    assert {row["suggestion"] for row in rows} <= set(SIB_LABELS)
    owner_key = LocalArgilla(Path(local_argilla["home"])).credentials("owner")["api_key"]
    config = AnnotationConfig(api_url=local_argilla["url"])
    client = connect(config, api_key=owner_key)
    dataset = ensure_dataset(client, config, DATASET, SIB_LABELS, dimensions=384, min_submitted=1)
    assert push_rows(client, dataset, rows, agent=AGENT, chunk=200) == len(rows)
    return rows


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk (which must come first)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.skipif(not CHROMIUM, reason="Chromium not found: apt-get install -y --no-install-recommends chromium "
                    "(or set CHROMIUM_PATH)")
def test_annotator_sees_the_record_with_the_students_suggestion(local_argilla, pushed):
    expect = sync_api.expect
    annotator = LocalArgilla(Path(local_argilla["home"])).credentials("annotator")
    by_text = {row["text"]: row for row in pushed}
    ARTIFACTS.mkdir(exist_ok=True)
    for stale in (SCREENSHOT, FAILURE):
        stale.unlink(missing_ok=True)
    errors: list[str] = []

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT, locale="en-US")
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            page.on("pageerror", lambda error: errors.append(str(error)))
            try:
                # Sign in with the username/password form.
                page.goto(f"{local_argilla['url']}/sign-in")
                page.locator("input[name=Username]").fill(annotator["username"])
                page.locator("input[name=Password]").fill(annotator["password"])
                page.locator("button[type=submit]").click()

                # Home: the annotator's workspace lists the dataset with its three records.
                title = page.get_by_role("heading", name=DATASET, exact=True)
                expect(title).to_be_visible()
                card = page.locator(".dataset-card").filter(has=title)
                expect(card).to_contain_text("curation")
                expect(card).to_contain_text(f"{len(pushed)} rows")
                title.click()

                # Annotation mode, pending queue: the first of the three records, pending.
                page.wait_for_url("**/annotation-mode**status=pending**")
                record = page.locator(".record--focus")
                text = record.locator(".content-area")
                expect(text).not_to_be_empty()
                shown = text.inner_text().strip()
                assert shown in by_text, f"the UI shows {shown!r}, which was not pushed"
                row = by_text[shown]
                expect(text).to_have_text(row["text"])
                expect(record.locator("[aria-label='Status of Record']")).to_have_text("pending", ignore_case=True)
                expect(page.locator("[aria-label='Current Record']")).to_have_text("1")
                expect(page.locator("[aria-label='Total Records']")).to_have_text(f"of {len(pushed)}")

                # The question offers the seven SIB-200 labels; the student's one alone is pre-selected and
                # carries the suggestion marker, its score and (on hover) the agent.
                options = page.locator("[aria-label='Label-Options'] input[type=checkbox]")
                expect(options).to_have_count(len(SIB_LABELS))
                assert sorted(options.evaluate_all("inputs => inputs.map(i => i.name)")) == SIB_LABELS
                suggested = page.locator(f"input[id='label_{row['suggestion']}']")
                expect(suggested).to_be_checked()
                assert options.evaluate_all("inputs => inputs.filter(i => i.checked).map(i => i.name)") \
                    == [row["suggestion"]]
                chip = page.locator(f"label[for='label_{row['suggestion']}']")
                expect(chip).to_have_class(re.compile(r"(^|\s)label-active(\s|$)"))
                expect(chip.locator(".label-text__suggestion__icon")).to_be_visible()
                expect(chip.locator(".label-text__suggestion__score")).to_have_text(f"{row['suggestion_score']:.1f}")
                assert page.locator(".label-text__suggestion").count() == 1, "only the student's label is suggested"
                chip.hover()
                tooltip = chip.locator("xpath=..").locator(".tooltip-content")  # faded in and out (opacity)
                expect(tooltip).to_have_class(re.compile(r"tooltip-content--show"))
                expect(tooltip).to_have_css("opacity", "1")
                expect(tooltip).to_have_text(re.compile(rf"^\s*Suggestion\s*{AGENT}\s*$"))
                page.mouse.move(0, VIEWPORT["height"] - 1)  # the tooltip would hide a label in the screenshot
                expect(tooltip).to_have_class(re.compile(r"tooltip-content--hide"))
                expect(tooltip).to_have_css("opacity", "0")

                # My progress: the whole batch is waiting for this annotator; the team has answered nothing.
                page.locator("button[aria-label='Expand Panel']", has_text="Submitted").click()
                expect(page.locator(".my-progress__list")).to_be_in_viewport(ratio=1)  # slides open
                counters = page.locator(".my-progress__list .status-counter")
                expect(counters).to_have_count(4)
                for status, count in {"pending": len(pushed), "draft": 0, "discarded": 0, "submitted": 0}.items():
                    counter = counters.filter(has=page.locator(".status-counter__name", has_text=status))
                    expect(counter.locator(".status-counter__counter")).to_have_text(str(count))
                expect(page.locator(".team-progress__info")).to_have_text(f"0 of {len(pushed)}")

                page.screenshot(path=SCREENSHOT, animations="disabled")  # transitions run to their end
            except Exception:
                with contextlib.suppress(Exception):  # never hide the failure behind a screenshot error
                    page.screenshot(path=FAILURE)
                raise
        finally:
            browser.close()

    assert not errors, f"uncaught errors in the page: {errors}"
    width, height = png_size(SCREENSHOT)
    assert (width, height) == (VIEWPORT["width"], VIEWPORT["height"])
    assert 20_000 < SCREENSHOT.stat().st_size < 5_000_000
    with Image.open(SCREENSHOT) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 100, "the screenshot is (nearly) blank"

