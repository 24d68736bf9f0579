"""report.html opened by headless Chromium, as a reader would: every image loads, the per-class
table has one row per class, nothing overflows a 1280 px window. Skipped only where no Chromium
is installed (Debian: `apt-get install chromium`)."""

import html
import json
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from cli.main import main
from fastseg.data.voc import VOC_CLASSES
from fastseg.training.config import TrainConfig
from fastseg.training.trainer import train

BROWSER = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)
CHECK = """<script>
window.addEventListener("load", () => {
  const width = document.documentElement.clientWidth;
  const result = {
    images: [...document.images].map(image => [image.alt, image.complete && image.naturalWidth > 0]),
    rows: [...document.querySelectorAll("table")].map(table => table.tBodies[0].rows.length),
    overflow: document.documentElement.scrollWidth - width,
    wide: [...document.querySelectorAll("body *")]
      .filter(element => element.getBoundingClientRect().right > width + 1).map(element => element.tagName),
  };
  const out = document.createElement("pre");
  out.id = "check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def chromium(*arguments: str) -> str:
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1280,2000", *arguments]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no Chromium found (Debian: apt-get install chromium)")
def test_report_reads_well_in_a_browser(voc_root, tmp_path):
    run_dir = tmp_path / "runs" / "tiny"
    config = TrainConfig(data=str(voc_root), out=str(run_dir), size=48, batch_size=8, epochs=1,
                         pretrained=False, num_workers=0, seed=0)  # fmt: skip
    train(config, run_dir, show_progress=False)
    result = CliRunner().invoke(main, ["report", "--model", str(run_dir), "--num-workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    page = run_dir / "report" / "report.html"  # the default --out: RUN/report
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", f"{CHECK}\n</body>"))

    dom = chromium("--virtual-time-budget=10000", "--dump-dom", checked.as_uri())
    found = json.loads(html.unescape(re.search(r'<pre id="check">(.*?)</pre>', dom, re.S).group(1)))
    assert found["images"] == [
        [name, True]
        for name in (
            "class_iou",
            "confusion_matrix",
            "predictions_random",
            "predictions_best",
            "predictions_worst",
            "training_curve",
        )
    ]
    headline, per_class, config_table = found["rows"]
    assert (headline, per_class) == (4, len(VOC_CLASSES))
    assert config_table == len(TrainConfig().to_dict()) - 1 + len(TrainConfig().augment.__dict__)
    assert found["overflow"] == 0 and found["wide"] == []

    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", page.as_uri())
    from PIL import Image

    assert Image.open(screenshot).size == (1280, 2000)

    runs = json.loads(CliRunner().invoke(main, ["runs", str(tmp_path / "runs"), "--json"]).output)
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    assert [(row["name"], row["test_miou"]) for row in runs] == [("tiny", pytest.approx(metrics["mean_iou"]))]
