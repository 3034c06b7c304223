"""`netspec draw`: the SVG holds every node's shape and params, groups and `from:` edges; --depth collapses;
text is escaped; the HTML page needs nothing from the network; headless Chromium draws a picture that is
not blank (skipped, saying why, where Chromium is not installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import netspec
import netspec.draw
from netspec.draw import page, tree
from netspec.layers.base import shape_text
from tests.conftest import SPECS, spec_files

SVG = "{http://www.w3.org/2000/svg}"
RESNET18 = SPECS / "torchvision" / "resnet18.yaml"
TINY = """\
name: tiny
input: [3, 16, 16]
layers:
  - conv: {out: 8, kernel: 3, padding: 1}
    name: stem
  - relu:
    name: act
  - residual:
      body:
        - conv: {out: 8, kernel: 3, padding: 1}
        - bn
  - parallel:
      merge: concat
      paths:
        - [{conv: {out: 4, kernel: 1}}]
        - [{conv: {out: 4, kernel: 3, padding: 1}}, relu]
  - add:
    from: [stem, act]
  - global_avgpool
  - flatten
  - linear: 10
"""


def report_of(path):
    return netspec.check(netspec.load(path))


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def groups(root: ET.Element, kind: str | None = None) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "group" and kind in (None, g.get("data-kind"))]


def boxes(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if (g.get("class") or "").split()[:1] == ["node"]]


@pytest.fixture(scope="module")
def resnet18():
    report = report_of(RESNET18)
    return report, ET.fromstring(netspec.draw.svg(report))


def test_resnet18_svg_holds_every_shape_its_blocks_and_the_totals(resnet18):
    report, root = resnet18
    shown = "\n".join(texts(root))
    assert "64×56×56" in shown and "56×56" in shown and "512×7×7" in shown
    assert "11,689,512" in shown  # torchvision's resnet18 params, in the totals line
    assert len(groups(root, "basic")) == 8 and len(groups(root, "residual")) == 8  # resnet18: 8 basic blocks
    assert len(groups(root, "stem")) == 1 and len(groups(root, "head")) == 1
    projections = [t for t in shown.split("\n") if t.startswith("conv(out=") and "kernel=1, stride=2" in t]
    assert len(projections) == 3  # the downsampling shortcuts of stages 2–4
    assert [t for t in shown.split("\n") if t.startswith("add (body + shortcut)")] != []


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
def test_every_row_of_every_shipped_spec_is_one_box_with_its_shape(path):
    report = report_of(path)
    root = ET.fromstring(netspec.draw.svg(report))
    assert len(boxes(root)) + len(groups(root)) == len(report.rows)
    shown = set(" ".join(texts(root)).replace("·", " ").split())
    assert {shape_text(row.output) for row in report.rows} <= shown


def test_from_edges_are_drawn_as_arrows_from_their_sources(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    root = ET.fromstring(netspec.draw.svg(report_of(spec)))
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "from"]
    assert sorted(g.find(f"{SVG}title").text for g in edges) == ["from: act", "from: stem"]
    assert all(g.find(f"{SVG}path").get("marker-end") for g in edges)
    assert [g.get("data-layout") for g in groups(root)] == ["residual", "parallel"]
    assert "identity" in texts(root)  # the residual's bypass


def test_depth_collapses_groups_into_boxes_with_the_same_totals(resnet18):
    report, full = resnet18
    totals = [t for t in texts(full) if t.startswith(("params:", "MACs:", "input "))]
    for depth, collapsed, shown in ((0, 9, 9), (1, 8, 21)):  # 9 top-level items; depth 1: 2 + 6 collapsed
        root = ET.fromstring(netspec.draw.svg(report, depth))
        assert len([b for b in boxes(root) if "collapsed" in b.get("class")]) == collapsed
        assert len(boxes(root)) == shown < len(boxes(full))
        assert [t for t in texts(root) if t.startswith(("params:", "MACs:", "input "))] == totals
    root = ET.fromstring(netspec.draw.svg(report, 0))
    assert "stem (4 layers)" in texts(root) and "head (3 layers)" in texts(root)


def test_text_reaching_the_picture_is_escaped():
    report = report_of(SPECS / "lenet.yaml")
    hostile = "<script>alert(1)</script> & \"q\" 'a' ]]> \x1b[31m"
    report.rows[0].label = hostile
    for text in (netspec.draw.svg(report), page.html(report, None, tree.build(report))):
        root = ET.fromstring(text.split("\n", 1)[1] if text.startswith("<!DOCTYPE") else text)
        assert not [e for e in root.iter() if e.tag.rpartition("}")[2] == "script" and "alert" in (e.text or "")]
        assert "<script>alert" not in text and "\x1b" not in text
        assert any("<script>alert(1)</script> & \"q\"" in "".join(e.itertext()) for e in root.iter())


def test_the_html_page_is_self_contained(tmp_path):
    report = report_of(RESNET18)
    out = tmp_path / "r.html"
    netspec.draw.write(report, out, depth=1)
    text = out.read_text()
    assert "http://" not in text and "https://" not in text and "src=" not in text
    root = ET.fromstring(text.split("\n", 1)[1])  # well-formed: the page parses as XML after its doctype
    assert [b.text for b in root.iter("button")] == ["depth 0", "depth 1", "depth 2", "all open"]
    assert len(list(root.iter("svg"))) == 4
    details = list(root.iter("details"))
    assert len(details) == len([r for r in report.rows if not r.leaf])  # the outline: one per group
    assert sum(d.get("open") is not None for d in details) == 9  # the top-level groups, open at --depth 1


def test_cli_writes_here_by_default_and_names_a_bad_suffix(cli, tmp_path):
    result = cli("draw", RESNET18, cwd=tmp_path)
    assert result.code == 0, result.err
    assert (tmp_path / "resnet18.svg").is_file() and "resnet18.svg" in result.out
    ET.parse(tmp_path / "resnet18.svg")
    result = cli("draw", RESNET18, "-o", tmp_path / "net.png")
    assert result.code == 2 and "-o" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "net.png").exists()
    result = cli("draw", RESNET18, "-o", tmp_path / "missing" / "net.svg")
    assert result.code == 2 and "-o" in result.err and "Traceback" not in result.err
    folder = tmp_path / "pictures"
    folder.mkdir()
    assert cli("draw", RESNET18, "-o", folder, "--depth", "1").code == 0
    assert (folder / "resnet18.svg").is_file()


def test_a_picture_over_the_box_limit_is_refused_with_a_hint(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(netspec.draw, "MAX_DRAW_BOXES", 20)
    result = cli("draw", RESNET18, "-o", tmp_path / "r.svg")
    assert result.code == 2 and "--depth" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "r.svg").exists()
    assert cli("draw", RESNET18, "-o", tmp_path / "r.svg", "--depth", "0").code == 0


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed: apt-get install chromium")
    return found


def render(url: str, png, tmp_path, size=(900, 1600)):
    """A headless Chromium screenshot of `url`; the PNG's pixels as an RGB image."""
    from PIL import Image

    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={png}",
               f"--window-size={size[0]},{size[1]}", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert png.is_file(), done.stderr[-2000:]
    return Image.open(png).convert("RGB")


def box_fill() -> tuple[int, int, int]:
    """The colour a layer's box is filled with (the picture's style sheet)."""
    code = re.search(r"\.node rect \{ fill: #(\w{6})", netspec.draw.STYLE).group(1)
    return tuple(int(code[i:i + 2], 16) for i in (0, 2, 4))


def colours(image) -> dict:
    return {colour: count for count, colour in image.getcolors(image.width * image.height)}


def test_chromium_draws_resnet18_and_the_picture_is_not_blank(tmp_path):
    chromium()
    svg = tmp_path / "resnet18.svg"
    netspec.draw.write(report_of(RESNET18), svg)
    image = render(svg.as_uri(), tmp_path / "svg.png", tmp_path)
    found = colours(image)
    pixels = image.width * image.height
    assert pixels - found.get((255, 255, 255), 0) > 0.05 * pixels  # boxes, lines and text, not a blank page
    assert len(found) > 10
    assert found.get(box_fill(), 0) > 20_000  # the layers' boxes themselves (an XML error page has none)


def test_chromium_shows_the_html_page_and_its_depth_buttons_switch_pictures(tmp_path):
    chromium()
    html = tmp_path / "resnet18.html"
    netspec.draw.write(report_of(RESNET18), html, depth=1)
    shots = {key: render(f"{html.as_uri()}#{key}", tmp_path / f"page-{key}.png", tmp_path) for key in ("1", "all")}
    for image in shots.values():
        assert colours(image).get(box_fill(), 0) > 5_000
    assert shots["1"].tobytes() != shots["all"].tobytes()  # the script showed another picture
