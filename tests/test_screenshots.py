"""Looking at saekit's HTML as a person would: the quickstart report and a dataset card rendered by
headless Chromium, in a light page and under JupyterLab's dark-theme variables, checked by pixels."""

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it as root)")

BAR_BLUE = (0x4C, 0x78, 0xA8)


def screenshot(html_path: Path, png: Path, size="1200,2200") -> Image.Image:
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={png.parent / 'chromium-profile'}", f"--window-size={size}",
            f"--screenshot={png}", html_path.as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )
    return Image.open(png).convert("RGB")


def count_near(img: Image.Image, color, tolerance=24) -> int:
    return sum(1 for p in img.get_flattened_data() if all(abs(a - b) <= tolerance for a, b in zip(p, color)))


def test_report_shows_charts_and_tables(saekit, tmp_path):
    out = tmp_path / "report.html"
    done = saekit("--workspace", tmp_path / "ws", "quickstart", "--out", out)
    assert done.returncode == 0, done.stderr
    img = screenshot(out, tmp_path / "report.png")
    assert img.size == (1200, 2200)
    # The histogram bars are drawn (a good area of the chart blue), and the page is not blank.
    assert count_near(img, BAR_BLUE) > 5_000
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50


def test_cards_follow_jupyterlab_dark_theme(saekit, tmp_path):
    report = tmp_path / "report.html"
    assert saekit("--workspace", tmp_path / "ws", "quickstart", "--out", report).returncode == 0
    # The report with JupyterLab's dark-theme variables set, as JupyterLab sets them, on a navy page.
    dark = tmp_path / "dark.html"
    theme = (
        "<style>:root { --jp-ui-font-color1: #f0f0f0; --jp-ui-font-color2: #c0c0c0; --jp-border-color2: #444;"
        " --jp-layout-color2: #333; --jp-layout-color3: #555; } body { background: #202040; }</style></head>"
    )
    dark.write_text(report.read_text().replace("</head>", theme, 1))
    img = screenshot(dark, tmp_path / "dark.png", size="1200,900")
    light_text = count_near(img, (0xF0, 0xF0, 0xF0), tolerance=30)
    dark_text = count_near(img, (0x1F, 0x23, 0x28), tolerance=12)  # the light theme's text colour
    assert light_text > 2_000, "text follows the theme's light font colour"
    assert dark_text < light_text / 20, "no dark-on-dark text"


def test_cards_inherit_page_colours_without_jupyterlab_variables(saekit, tmp_path):
    """VS Code notebooks and other hosts do not set JupyterLab's variables: saekit takes the page's colours."""
    report = tmp_path / "report.html"
    assert saekit("--workspace", tmp_path / "ws", "quickstart", "--out", report).returncode == 0
    dark = tmp_path / "dark.html"
    theme = "<style>body { background: #202040; color: #f0f0f0; }</style></head>"
    dark.write_text(report.read_text().replace("</head>", theme, 1))
    img = screenshot(dark, tmp_path / "dark.png", size="1200,900")
    assert count_near(img, (0xF0, 0xF0, 0xF0), tolerance=30) > 2_000
    assert count_near(img, (0x1F, 0x23, 0x28), tolerance=12) < 100, "no dark-on-dark text"


ORANGE = (0xF5, 0x85, 0x18)
JUPYTER_DARK = (
    "<style>:root { --jp-ui-font-color1: #f0f0f0; --jp-ui-font-color2: #c0c0c0; --jp-border-color2: #444;"
    " --jp-layout-color2: #333; --jp-layout-color3: #555; } body { background: #202040; color: #f0f0f0; }</style></head>"
)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_chart_kind_draws_in_light_and_dark(saekit, tmp_path, theme):
    """`saekit gallery`: a histogram (linear and log counts), line charts (two smoothed series; log axes),
    horizontal bars, a scatter and a grid of small multiples, each an inline SVG with nice ticks, drawn
    in Chromium in a light page and under JupyterLab's dark-theme variables."""
    page = tmp_path / "gallery.html"
    done = saekit("gallery", "--out", page)
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    for title in ["Document length", "Loss", "Rank / frequency", "Mix", "L0 / explained variance", "Small multiples"]:
        assert f">{title}<" in html, title
    # Nice ticks and powers of ten, not 4.144 or log10 values.
    for tick in [">1,000<", ">2,000<", ">20k<", ">10³<", ">10⁴<", ">0.5<"]:
        assert tick in html, tick
    assert "legend" in html and "(smoothed)" in html
    if theme == "dark":
        page = tmp_path / "dark.html"
        page.write_text(html.replace("</head>", JUPYTER_DARK, 1))
    img = screenshot(page, tmp_path / f"{theme}.png", size="1100,3200")
    blue, orange = count_near(img, BAR_BLUE), count_near(img, ORANGE)
    assert blue > 20_000, f"bars and series in blue: {blue} pixels"
    assert orange > 500, f"a second series in orange: {orange} pixels"
    if theme == "dark":
        light_text = count_near(img, (0xF0, 0xF0, 0xF0), tolerance=30)
        assert light_text > 3_000, "tick labels and titles follow the theme's light colour"
        assert count_near(img, (0x1F, 0x23, 0x28), tolerance=12) < light_text / 20, "no dark-on-dark text"
