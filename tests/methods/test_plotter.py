"""dedupd.utils.plot_duplicates on real corpus images; argument errors checked against imagededup's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dedupd.utils import PlotArgumentError, plot_duplicates

CORPUS_SCRIPT = Path("/work/shared/corpus/make_corpus.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    if not CORPUS_SCRIPT.exists():
        pytest.skip(f"{CORPUS_SCRIPT} not available")
    root = tmp_path_factory.mktemp("plot_corpus")
    subprocess.run(
        [sys.executable, str(CORPUS_SCRIPT), "--kind", "mixed", "--count", "40", "--nested",
         "--out", str(root / "imgs"), "--meta-dir", str(root / "meta"), "--quiet"],
        check=True,
    )
    return root / "imgs", json.loads((root / "meta" / "ground_truth.json").read_text())


@pytest.fixture(autouse=True)
def _agg_and_no_leaks() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    yield
    assert plt.get_fignums() == [], "plot_duplicates left a pyplot figure open"


def query_with_duplicates(ground_truth: dict[str, list[str]]) -> str:
    return max(ground_truth, key=lambda name: (len(ground_truth[name]), name))


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert 500 <= img.width <= 3000 and 500 <= img.height <= 3000
        img.load()
        low, high = img.convert("L").getextrema()
        assert high - low > 50  # images were drawn, not a blank canvas


def test_ground_truth_map_to_png(corpus: tuple[Path, dict], tmp_path: Path, monkeypatch: Any) -> None:
    import matplotlib.pyplot as plt

    def no_show(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("plt.show() must not be called when outfile is given")

    monkeypatch.setattr(plt, "show", no_show)
    image_dir, ground_truth = corpus
    outfile = tmp_path / "dups.png"
    query = query_with_duplicates(ground_truth)
    assert plot_duplicates(image_dir, ground_truth, query, outfile=outfile) is None
    assert_png(outfile)


def test_scored_map_with_many_rows_and_str_paths(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    image_dir, ground_truth = corpus
    names = sorted(ground_truth)
    query, others = names[0], names[1:10]  # nine entries: three rows under the query
    scores: list[Any] = [3, 0.912345, 7, 0.5, 1, 2, 0.25, 4, 9]
    duplicate_map = {query: list(zip(others, scores))}
    outfile = tmp_path / "scored.png"
    plot_duplicates(str(image_dir), duplicate_map, query, outfile=str(outfile))
    assert_png(outfile)


def test_name_with_spaces_in_subfolder(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    image_dir, ground_truth = corpus
    spaced = [name for name in ground_truth if " " in name and "/" in name]
    if not spaced:
        pytest.skip("this corpus has no nested name with a space")
    query = spaced[0]
    other = next(name for name in ground_truth if name != query)
    outfile = tmp_path / "spaced.png"
    plot_duplicates(image_dir, {query: [other], other: [query]}, query, outfile=outfile)
    assert_png(outfile)


def test_without_outfile_shows_and_closes(corpus: tuple[Path, dict], monkeypatch: Any) -> None:
    import matplotlib.pyplot as plt

    calls: list[int] = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append(len(plt.get_fignums())))
    image_dir, ground_truth = corpus
    plot_duplicates(image_dir, ground_truth, query_with_duplicates(ground_truth))
    assert calls == [1]  # shown once, with the figure open; the autouse fixture checks it was closed


def test_importing_utils_does_not_import_matplotlib() -> None:
    code = "import sys, dedupd.utils; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unreadable_image_raises_pillows_error_as_the_reference(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    """The reference opens each image with Pillow: a missing file is a FileNotFoundError, a
    non-image an UnidentifiedImageError, a truncated one an OSError; any Pillow format plots."""
    from PIL import UnidentifiedImageError

    image_dir, ground_truth = corpus
    query = sorted(ground_truth)[0]
    work = tmp_path / "imgs"
    shutil.copytree(image_dir, work)
    (work / "notes.jpg").write_text("not an image")
    whole = (work / query).read_bytes()
    (work / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    Image.new("RGBA", (32, 32), (10, 200, 30, 128)).save(work / "icon.ico")
    Image.new("L", (32, 32), 90).save(work / "gray.png")
    for name, error in (("missing.jpg", FileNotFoundError), ("notes.jpg", UnidentifiedImageError),
                        ("cut.jpg", OSError)):
        with pytest.raises(error):
            plot_duplicates(work, {query: [name]}, query, outfile=tmp_path / "x.png")
        assert not (tmp_path / "x.png").exists()
    plot_duplicates(work, {query: ["icon.ico", "gray.png"]}, query, outfile=tmp_path / "y.png")
    assert (tmp_path / "y.png").read_bytes().startswith(PNG_SIGNATURE)


# --- argument errors, same exception types as imagededup --------------------------------------


def error_cases(image_dir: Path, ground_truth: dict) -> dict[str, tuple[Any, Any, str, type, str]]:
    query = query_with_duplicates(ground_truth)
    lonely = next(name for name, dups in ground_truth.items() if not dups)
    return {
        "missing_dir": (image_dir / "nope", ground_truth, query, AssertionError, "not a directory"),
        "file_as_dir": (image_dir / query, ground_truth, query, AssertionError, "not a directory"),
        "map_not_dict": (image_dir, [query], query, ValueError, "must be a dict"),
        "unknown_filename": (image_dir, ground_truth, "nope.jpg", ValueError, "not a key"),
        "no_duplicates": (image_dir, ground_truth, lonely, AssertionError, "no duplicates"),
    }


@pytest.mark.parametrize(
    "case", ["missing_dir", "file_as_dir", "map_not_dict", "unknown_filename", "no_duplicates"]
)
def test_argument_errors_match_reference(corpus: tuple[Path, dict], tmp_path: Path, case: str) -> None:
    ref_plotter = pytest.importorskip("imagededup.utils.plotter")
    image_dir, ground_truth, filename, ref_type, pattern = error_cases(*corpus)[case]
    outfile = tmp_path / "never.png"
    with pytest.raises(ref_type):
        ref_plotter.plot_duplicates(image_dir, ground_truth, filename, outfile=str(outfile))
    with pytest.raises(ref_type, match=pattern) as info:
        plot_duplicates(image_dir, ground_truth, filename, outfile=outfile)
    assert isinstance(info.value, PlotArgumentError)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)
    assert not outfile.exists()


def test_titles_print_scores_as_the_reference() -> None:
    """Only float32 similarities (the CNN's own) are rounded to 3 decimals; Python floats (a map
    returned with ``outfile`` or read back from its JSON), float64 and distances print in full."""
    import numpy as np
    from imagededup.utils.plotter import _formatter

    from dedupd.utils.plotter import _format_score

    for score in (np.float32(0.91234567), 0.81342537, np.float64(0.9876543), 7, np.int64(3), 1.0):
        assert _format_score(score) == f"{_formatter(score)}", score
