"""docs/diagrams: one command renders every source, and the committed images are its output."""

import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

DIAGRAMS = Path(__file__).resolve().parent.parent / "docs" / "diagrams"
BUILD = DIAGRAMS / "build.sh"
SOURCES = sorted(DIAGRAMS.glob("*.dot"))
FORMATS = ("svg", "png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, which must come first in a valid PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name}: not a PNG"
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert chunk == b"IHDR" and length == 13, f"{path.name}: PNG without IHDR"
    assert data.rstrip(b"\0")[-8:-4] == b"IEND", f"{path.name}: truncated PNG"
    return struct.unpack(">II", data[16:24])


def svg_size(path):
    root = ET.parse(path).getroot()  # noqa: S314 -- our own build output
    assert root.tag == "{http://www.w3.org/2000/svg}svg", f"{path.name}: not an SVG"
    return root.get("width"), root.get("height")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("diagrams")
    result = subprocess.run(
        [str(BUILD), str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return out


def test_there_are_diagram_sources():
    assert {source.stem for source in SOURCES} >= {"images", "boot", "pipeline"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.stem)
def test_build_renders_each_source_to_valid_images(rendered, source):
    width, height = png_size(rendered / f"{source.stem}.png")
    assert width > 100 and height > 100
    assert all(svg_size(rendered / f"{source.stem}.svg"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.stem)
def test_committed_images_are_the_build_output(rendered, source):
    """Fails when a source changed without running docs/diagrams/build.sh (same graphviz)."""
    tracked = subprocess.run(
        ["git", "ls-files", "--", "."], cwd=DIAGRAMS, capture_output=True, text=True, check=True
    ).stdout.split()
    for fmt in FORMATS:
        committed = DIAGRAMS / f"{source.stem}.{fmt}"
        assert committed.name in tracked, (
            f"docs/diagrams/{committed.name} is not committed: run docs/diagrams/build.sh, "
            "then git add it"
        )
        assert committed.read_bytes() == (rendered / committed.name).read_bytes(), (
            f"{committed.name} is stale: run docs/diagrams/build.sh"
        )


def test_every_committed_image_has_a_source():
    orphans = [
        image.name
        for fmt in FORMATS
        for image in DIAGRAMS.glob(f"*.{fmt}")
        if not (DIAGRAMS / f"{image.stem}.dot").exists()
    ]
    assert not orphans, f"images without a .dot source: {orphans}"


def test_missing_graphviz_is_one_line(tmp_path):
    """A PATH with the tools build.sh uses, except dot."""
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    for tool in ("dirname", "basename", "mkdir"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(
        ["/bin/bash", str(BUILD), str(out)],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr == "error: graphviz's dot not found; install it (apt-get install graphviz)\n"
    )
    assert not out.exists()
