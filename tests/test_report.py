"""Tests of the self-contained HTML report (ps3d_toolkit.report)."""

from __future__ import annotations

import base64
import html
import html.parser
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error
from PIL import Image

from ps3d_toolkit.analysis.evaluate import evaluate_instances
from ps3d_toolkit.analysis.stats import percentiles
from ps3d_toolkit.io import Scan, save_labels, save_scan
from ps3d_toolkit.measurement import measure
from ps3d_toolkit.measurement.intensity import LIBERATION_CLASSES
from ps3d_toolkit.report import build_report, export_tables, liberation_table, summary_table, write_report

SPACING = 0.1


@pytest.fixture(scope="module")
def cubes():
    """Two bright cubes of known size on a dark background, and their labels."""
    labels = np.zeros((20, 24, 28), np.uint32)
    labels[2:8, 3:9, 4:10] = 1      # 6^3 voxels
    labels[10:18, 12:20, 14:22] = 2  # 8^3 voxels
    image = np.where(labels > 0, 1000, 100).astype(np.uint16)
    scan = Scan(image=image, spacing=SPACING, name="cubes")
    table = measure(labels, image=image, spacing=SPACING, progress=False)
    return scan, labels, table


def _pngs(text: str) -> list:
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'<img class="slice"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


class _Report(html.parser.HTMLParser):
    """The parsed page: its title and, per section heading, the rows of its tables (cell texts)."""

    def __init__(self, text: str):
        super().__init__()
        self.title, self.sections = "", {}
        self._tag, self._heading, self._row = None, None, None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag in ("title", "h2", "td", "th"):
            self._tag = tag
            if tag in ("td", "th") and self._row is not None:
                self._row.append("")
        elif tag == "table" and self._heading is not None:
            self.sections[self._heading].append([])
        elif tag == "tr" and self._heading is not None:
            self._row = []

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.sections[self._heading][-1].append(self._row)
            self._row = None
        if tag == self._tag:
            self._tag = None

    def handle_data(self, data):
        if self._tag == "title":
            self.title += data
        elif self._tag == "h2":
            self._heading = data
            self.sections[data] = []
        elif self._tag in ("td", "th") and self._row is not None:
            self._row[-1] += data


def _payload(text: str) -> tuple:
    """plotly.js and the figure specs inline in the page (as its script draws them)."""
    plotlyjs = re.findall(r'<script type="text/javascript">(.*?)</script>', text, flags=re.S)
    specs = re.findall(r'<script type="application/json" id="ps3d-figures">(.*?)</script>', text, flags=re.S)
    assert len(plotlyjs) == 1 and len(specs) == 1, "plotly.js and the figures, once each"
    return plotlyjs[0], json.loads(specs[0])


def _n_figures(text: str) -> int:
    return text.count('<div class="ps3d-figure"')


def _summary_cells(text: str) -> dict:
    """The Summary section's key-value table, as the reader sees it (entities decoded)."""
    return {row[0]: row[1] for row in _Report(text).sections["Summary"][0]}


def test_report_is_self_contained_with_every_section(cubes, tmp_path):
    scan, labels, table = cubes
    metrics = evaluate_instances(labels, labels)
    path = write_report(table, tmp_path / "report.html", scan=scan, labels=labels, metrics=metrics,
                        title="Two <cubes>", notes={"method": "by hand"})
    assert path == tmp_path / "report.html"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left
    text = path.read_text(encoding="utf-8")
    page = _Report(text)
    assert page.title == "Two <cubes>"
    # in this order, and no phases measured: no phase sections
    assert list(page.sections) == ["Summary", "How far to trust these particles", "Accuracy against the ground truth",
                                   "Particle-size distribution", "Shape", "Slices", "Particles"]
    # plotly.js is inline (once, uncompressed: drawn as the page loads) and nothing is loaded from elsewhere
    plotlyjs, specs = _payload(text)
    assert "plotly.js v" in plotlyjs and "<script src=" not in text and "DecompressionStream" not in text
    # cumulative PSD, histograms by volume and number, sphericity against size, Zingg diagram
    assert _n_figures(text) == len(specs) == 5
    titles = [spec["layout"]["title"]["text"] for spec in specs]
    assert "Cumulative" in titles[0] and titles[4] == "Zingg diagram"
    summary = _summary_cells(text)
    assert summary["particles"] == "2" and summary["method"] == "by hand"
    accuracy = {row[0]: row[1] for row in page.sections["Accuracy against the ground truth"][0]}
    assert accuracy["F1 at IoU > 0.5"] == "1" and accuracy["particles found"] == "2"
    # the sieve table: 100 % of the volume passes the largest aperture
    sieve = page.sections["Particle-size distribution"][1]
    assert sieve[0] == ["aperture, mm", "% passing by volume", "% passing by number"]
    assert sieve[-1][1:] == ["100", "100"] and sieve[1][1:] == ["0", "0"]


def test_slice_images_show_the_outlines(cubes, tmp_path):
    scan, labels, table = cubes
    text = write_report(table, tmp_path / "r.html", scan=scan, labels=labels).read_text()
    images = _pngs(text)
    assert len(images) == 2
    z_slice = np.asarray(images[0].convert("RGB"))
    # enlarged by a whole factor to at least 384 px, aspect kept
    factor = z_slice.shape[0] // labels.shape[1]
    assert factor >= 2 and z_slice.shape[:2] == (labels.shape[1] * factor, labels.shape[2] * factor)
    orange = np.all(z_slice == (255, 120, 0), axis=-1)
    # the middle z slice (10) cuts cube 2 only: its outline is a square ring of 8 x 8 voxels
    expected = np.zeros(labels.shape[1:], bool)
    expected[12:20, 14:22] = True
    expected[13:19, 15:21] = False
    np.testing.assert_array_equal(orange[::factor, ::factor], expected)


def test_slice_images_carry_a_scale_bar(cubes, tmp_path):
    scan, labels, table = cubes
    z_slice = np.asarray(_pngs(write_report(table, tmp_path / "r.html", scan=scan, labels=labels).read_text())[0]
                         .convert("RGB"))
    rows, cols = z_slice.shape[:2]
    factor = rows // labels.shape[1]
    # 0.1 mm voxels shown 14 times enlarged: a quarter of 392 px is 0.7 mm, so the bar is 0.5 mm = 70 px
    from ps3d_toolkit.viz.slices import scale_bar_length

    length_mm = scale_bar_length(cols, SPACING / factor)
    assert length_mm == 0.5
    white = np.all(z_slice == 255, axis=-1)
    runs = [int(white[r].sum()) for r in range(rows - 20, rows)]
    assert max(runs) == round(length_mm / (SPACING / factor))
    # the cubes are grey (1000 of 100..1000 windowed), so white is the bar and its label only
    assert not white[: rows // 2].any()


def test_report_without_scan_labels_or_metrics(cubes, tmp_path):
    _, _, table = cubes
    text = write_report(table, tmp_path / "r.html").read_text()
    assert list(_Report(text).sections) == ["Summary", "How far to trust these particles",
                                            "Particle-size distribution", "Shape", "Particles"]


def test_empty_table_still_makes_a_report(tmp_path):
    empty = measure(np.zeros((8, 8, 8), np.uint32), spacing=SPACING, progress=False)
    text = write_report(empty, tmp_path / "r.html").read_text()
    assert _summary_cells(text)["particles"] == "0"
    assert list(_Report(text).sections) == ["Summary"] and "Plotly" not in text


def test_sections_are_pluggable(cubes):
    _, _, table = cubes
    text = build_report(table, sections=[lambda ctx: f"<p>custom {len(ctx.table)}</p>", lambda ctx: None])
    body = text.split("<body>", 1)[1]
    assert "<p>custom 2</p>" in body and "<h2>" not in body


def test_bad_input_leaves_an_existing_report_untouched(cubes, tmp_path):
    scan, labels, table = cubes
    path = tmp_path / "report.html"
    path.write_text("previous report")
    with pytest.raises(TypeError, match="table"):
        write_report(table.to_dict(), path)
    with pytest.raises(ValueError, match="same shape"):
        write_report(table, path, scan=scan, labels=labels[:-1])
    with pytest.raises(ValueError, match=".html"):
        write_report(table, tmp_path / "report.pdf")
    assert path.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_table_is_a_dataframe_of_measure(cubes):
    # guards the columns the summary reads
    _, _, table = cubes
    assert isinstance(table, pd.DataFrame)
    assert {"eq_diameter_mm", "volume_mm3"} <= set(table.columns)
    np.testing.assert_allclose(sorted(table["volume_mm3"]), [216 * SPACING**3, 512 * SPACING**3])


def test_the_particle_table_shows_the_largest_particles_in_the_statistics_with_cut_ones_marked():
    sizes = np.arange(1, 31, dtype=float)
    table = pd.DataFrame({"label": np.arange(1, 31, dtype=np.uint32), "volume_mm3": sizes,
                          "eq_diameter_mm": (6 * sizes / np.pi) ** (1 / 3),
                          "touches_border": np.arange(1, 31) % 3 == 0})  # every third particle is cut

    def shown(text):
        rows = _Report(text).sections["Particles"][0]
        assert rows[0][-1] == "cut"
        return [(int(row[0]), row[-1]) for row in rows[1:]]

    # by default the 20 largest uncut particles, largest first: those the statistics count
    default = shown(build_report(table))
    assert default == [(label, "no") for label in range(30, 0, -1) if label % 3][:20]
    # with the cut ones counted, the 20 largest of all, the cut ones marked
    counted = shown(build_report(table, include_cut=True))
    assert counted == [(label, "yes" if label % 3 == 0 else "no") for label in range(30, 10, -1)]


def test_the_report_takes_the_sample_region_as_measure_does(cubes, tmp_path):
    scan, labels, table = cubes
    inside = np.zeros(labels.shape, bool)
    inside[:, :, :12] = True  # cube 1 (x 4..9) inside, cube 2 (x 14..21, in the middle z slice) outside
    measured = measure(labels, scan.image, spacing=SPACING, mask=inside, progress=False)
    assert measured["label"].tolist() == [1] and measured.attrs["sample_region"] == "mask array"
    for region in ({"mask": inside}, {"roi": ":,:,0:12"}):
        text = build_report(measured, scan=scan, labels=labels, **region)
        captions = re.findall(r"<figcaption>([^<]*)</figcaption>", text)
        # only the particle measured is outlined (not cube 2, outside the region), with the region's edge
        assert captions[0] == "z = 10 (middle slice), 0 particles outlined, the sample region&#x27;s edge in blue"
        assert "cut by the edge of the scan or of the sample region" in text
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", build_report(measured, scan=scan, labels=labels))[0] == (
        "z = 10 (middle slice), 1 particles outlined")
    with pytest.warns(DeprecationWarning, match="sample_region= is deprecated"):
        old = write_report(measured, tmp_path / "old.html", scan=scan, labels=labels, sample_region=inside)
    assert "the sample region&#x27;s edge in blue" in old.read_text()
    with pytest.raises(ValueError, match="mask has shape"):
        build_report(measured, labels=labels, mask=inside[:-1])


# --------------------------------------------------------------------------- mineralogy sections and tables



@pytest.fixture
def minerals():
    """Five particles of two phases, with classes known by construction.

    ore fractions 0, 0.2 (locked), 0.5 (middling), 0.95, 1 (liberated);
    gangue is the rest: 1 (liberated), 0.8, 0.5 (middling), 0.05, 0 (locked).
    """
    volume = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    return pd.DataFrame({
        "label": np.arange(1, 6, dtype=np.uint32),
        "volume_mm3": volume,
        "eq_diameter_mm": (6 * volume / np.pi) ** (1 / 3),
        "phase_fraction_ore": [0.0, 0.2, 0.5, 0.95, 1.0],
        "phase_fraction_gangue": [1.0, 0.8, 0.5, 0.05, 0.0],
    })


def test_liberation_table_counts_and_volume_shares(minerals):
    lib = liberation_table(minerals).set_index(["phase", "liberation_class"])
    assert list(lib.index.get_level_values(0).unique()) == ["ore", "gangue"]
    assert list(lib.loc["ore"].index) == list(LIBERATION_CLASSES)
    # barren (< 2 %), locked (< 30 %), middling (< 95 %), liberated
    np.testing.assert_array_equal(lib.loc["ore", "count"], [1, 1, 1, 2])
    np.testing.assert_array_equal(lib.loc["gangue", "count"], [1, 1, 2, 1])
    np.testing.assert_allclose(lib.loc["ore", "count_share"], [0.2, 0.2, 0.2, 0.4])
    np.testing.assert_allclose(lib.loc["ore", "particle_volume_mm3"], [1.0, 2.0, 3.0, 14.0])
    np.testing.assert_allclose(lib.loc["ore", "particle_volume_share"], [1 / 20, 2 / 20, 3 / 20, 14 / 20])
    # ore volume: none barren, 0.2 * 2 locked, 0.5 * 3 middling, 0.95 * 4 + 10 liberated, of 15.7 in all
    np.testing.assert_allclose(lib.loc["ore", "phase_volume_mm3"], [0.0, 0.4, 1.5, 13.8])
    np.testing.assert_allclose(lib.loc["ore", "phase_volume_share"], np.array([0.0, 0.4, 1.5, 13.8]) / 15.7)
    np.testing.assert_allclose(lib.loc["gangue", "phase_volume_mm3"], [0.0, 0.2, 3.1, 1.0])
    # other thresholds move the boundary particles: gangue 0.8 becomes liberated
    other = liberation_table(minerals, thresholds=(0.1, 0.75)).set_index(["phase", "liberation_class"])
    np.testing.assert_array_equal(other.loc["gangue", "count"], [1, 1, 1, 2])


def test_liberation_table_keeps_the_tables_own_classes(minerals):
    # measured with other thresholds: the ore's own column wins unless thresholds are given
    minerals["liberation_ore"] = pd.Categorical(["barren", "middling", "liberated", "liberated", "liberated"],
                                                categories=list(LIBERATION_CLASSES), ordered=True)
    lib = liberation_table(minerals).set_index(["phase", "liberation_class"])
    np.testing.assert_array_equal(lib.loc["ore", "count"], [1, 0, 1, 3])
    np.testing.assert_array_equal(lib.loc["gangue", "count"], [1, 1, 2, 1])
    again = liberation_table(minerals, thresholds=(0.3, 0.95)).set_index(["phase", "liberation_class"])
    np.testing.assert_array_equal(again.loc["ore", "count"], [1, 1, 1, 2])
    with pytest.raises(ValueError, match="phase_fraction"):
        liberation_table(minerals.drop(columns=["phase_fraction_ore", "phase_fraction_gangue"]))


def test_sections_follow_the_columns(minerals):
    text = build_report(minerals)
    for heading in ("Summary", "Particle-size distribution", "Phases", "Liberation", "Particles"):
        assert heading in _Report(text).sections
    assert "Shape" not in _Report(text).sections  # no axes or sphericity in the table
    # cumulative PSD, two histograms, liberation bars; plotly.js once
    assert _n_figures(text) == len(_payload(text)[1]) == 4
    page = _Report(text)
    # ore 0 % is barren, 20 % locked (1 of 5 particles, 2 of 20 mm³, 0.4 of the 15.7 mm³ of ore)
    assert ["ore", "barren", "1", "20", "5", "0"] in page.sections["Liberation"][0]
    assert ["ore", "locked", "1", "20", "10", "2.55"] in page.sections["Liberation"][0]
    ore = next(row for row in page.sections["Phases"][0] if row[0] == "ore")
    assert ore[1:3] == ["15.7", "78.5"]  # 15.7 of 20 mm³
    assert ore[-2:] == ["4", "5"]  # contained (>= 2 %) in 4 of the 5 particles

    bare = build_report(minerals[["label"]])
    assert "Summary" in _Report(bare).sections and "Plotly" not in bare
    for heading in ("Particle-size distribution", "Shape", "Phases", "Liberation"):
        assert heading not in _Report(bare).sections


def test_the_liberation_figure_shows_every_class_barren_included(minerals):
    specs = _payload(build_report(minerals))[1]
    figure = next(spec for spec in specs if "Liberation" in spec["layout"]["title"]["text"])
    bars = {}
    for trace in figure["data"]:
        bars.setdefault(trace["name"], []).append(trace)
    assert list(bars) == list(LIBERATION_CLASSES)
    # particles on the left, the phase's volume on the right: ore is barren in 1 of 5 particles (20 %)
    left = {trace["name"]: trace for trace in figure["data"] if trace.get("xaxis", "x") == "x"}
    ore = left["barren"]["y"].index("ore")
    assert _values(left["barren"]["x"])[ore] == pytest.approx(20.0)


def _values(data) -> list:
    """A plotly trace's numbers, whether plain or packed as a typed array (``bdata``)."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).tolist()
    return list(data)


def test_phases_are_named_by_the_user_or_by_their_grey_values(cubes):
    scan, labels, _ = cubes
    image = scan.image.copy()
    image[10:18, 12:20, 18:22] = 3000   # half of cube 2 bright: three grey levels, 100, 1000 and 3000
    auto = measure(labels, image, spacing=SPACING, phases="auto", progress=False)
    text = build_report(auto)
    phases = [row[0] for row in _Report(text).sections["Phases"][0][1:]]
    assert re.fullmatch(r"darker phase \(grey < 1,\d\d\d\)", phases[0]), phases
    assert re.fullmatch(r"brighter phase \(grey ≥ 1,\d\d\d\)", phases[1]), phases
    assert "phase_1" not in text.split("<script")[0]
    named = measure(labels, image, spacing=SPACING, phases="auto", phase_names="quartz,magnetite", progress=False)
    page = _Report(build_report(named))
    assert [row[0] for row in page.sections["Phases"][0][1:]] == ["quartz", "magnetite"]
    assert "magnetite: liberation" in page.sections["Particles"][0][0]
    # or named when the report is written
    renamed = _Report(build_report(auto, phase_names="quartz,magnetite"))
    assert [row[0] for row in renamed.sections["Phases"][0][1:]] == ["quartz", "magnetite"]
    with pytest.raises(ValueError, match="give 2 distinct phase names"):
        build_report(auto, phase_names=["quartz"])


def test_summary_d_values_are_the_percentiles(cubes):
    scan, labels, table = cubes
    summary = summary_table(table, scan=scan, notes={"method": "by hand"}).set_index("quantity")
    text = build_report(table, scan=scan, notes={"method": "by hand"})
    cells = _summary_cells(text)
    for weight in ("number", "volume"):
        for name, value in percentiles(table, weight=weight).items():
            d = name.removesuffix("_mm")
            assert summary.loc[f"{d}_{weight}_mm", "value"] == value
            assert cells[f"{d} by {weight}, mm"] == f"{value:.3g}"  # 3 significant digits throughout
    # two cubes of 6 and 8 voxels a side, 0.1 mm each
    assert summary.loc["total_volume_mm3", "value"] == pytest.approx(0.216 + 0.512)
    assert summary.loc["n_particles", "value"] == 2
    assert cells["voxel size (z × y × x), mm"] == "0.1 × 0.1 × 0.1"
    assert cells["voxels (z × y × x)"] == "20 × 24 × 28"
    assert cells["mean sphericity (Wadell)"] == f"{table['sphericity'].mean():.3g}"
    assert cells["method"] == "by hand"
    # without the scan, the spacing comes from the table
    assert _summary_cells(build_report(table))["voxel size (z × y × x), mm"] == "0.1 × 0.1 × 0.1"


def test_excel_workbook_round_trips(cubes, minerals, tmp_path):
    scan, _, table = cubes
    path = tmp_path / "out" / "report.xlsx"
    assert export_tables(table, path, scan=scan) == [path]
    assert [p.name for p in path.parent.iterdir()] == ["report.xlsx"]
    sheets = pd.read_excel(path, sheet_name=None)
    assert list(sheets) == ["particles", "summary", "psd", "shape"]
    pd.testing.assert_frame_equal(sheets["particles"], table, check_dtype=False)
    summary = sheets["summary"].set_index("quantity")["value"]
    assert float(summary["d50_volume_mm"]) == pytest.approx(percentiles(table)["d50_mm"])
    psd = sheets["psd"]
    assert psd["percent_passing_volume"].iloc[-1] == pytest.approx(100)
    assert psd["percent_passing_number"].is_monotonic_increasing
    assert set(sheets["shape"]["quantity"]) >= {"sphericity", "zingg_spheroid"}

    phased = export_tables(minerals, tmp_path / "minerals.xlsx")[0]
    sheets = pd.read_excel(phased, sheet_name=None)
    assert list(sheets) == ["particles", "summary", "psd", "phases", "liberation"]
    pd.testing.assert_frame_equal(sheets["liberation"], liberation_table(minerals), check_dtype=False)
    assert list(sheets["phases"]["phase"]) == ["ore", "gangue"]
    assert sheets["phases"]["volume_mm3"].tolist() == pytest.approx([15.7, 4.3])


def test_csv_export_beside_the_particle_table(minerals, tmp_path):
    written = export_tables(minerals, tmp_path / "particles.csv")
    names = [p.name for p in written]
    assert names == ["particles.csv", "particles_summary.csv", "particles_psd.csv", "particles_phases.csv",
                     "particles_liberation.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary files left
    pd.testing.assert_frame_equal(pd.read_csv(written[0]), minerals, check_dtype=False)
    lib = pd.read_csv(tmp_path / "particles_liberation.csv")
    assert lib["count"].tolist() == [1, 1, 1, 2, 1, 1, 2, 1]
    # a stem without extension: every table gets its suffix
    stem = export_tables(minerals[["label", "volume_mm3", "eq_diameter_mm"]], tmp_path / "sub" / "run1")
    assert [p.name for p in stem] == ["run1_particles.csv", "run1_summary.csv", "run1_psd.csv"]


def test_export_refuses_bad_input(minerals, tmp_path):
    with pytest.raises(ValueError, match=".xlsx or .csv"):
        export_tables(minerals, tmp_path / "tables.parquet")
    with pytest.raises(TypeError, match="DataFrame"):
        export_tables(minerals.to_dict(), tmp_path / "tables.xlsx")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- ps3d report


@pytest.fixture(scope="module")
def scan_files(tmp_path_factory):
    """Two cubes, the second one half bright, as TIFF scan and labels with their spacing."""
    labels = np.zeros((20, 24, 28), np.uint32)
    labels[2:8, 3:9, 4:10] = 1
    labels[10:18, 12:20, 14:22] = 2
    image = np.where(labels > 0, 1000, 100).astype(np.uint16)
    image[10:18, 12:20, 18:22] = 3000
    folder = tmp_path_factory.mktemp("cli")
    return {"scan": save_scan(image, folder / "scan.tif", spacing=SPACING),
            "labels": save_labels(labels, folder / "labels.tif", spacing=SPACING),
            "folder": folder}


def test_cli_report_measures_with_phases_and_writes_every_table(ps3d, scan_files, tmp_path):
    out = tmp_path / "r"
    code, stdout, err = ps3d("report", scan_files["labels"], "--image", scan_files["scan"],
                             "--phases", "dark:0:2000,bright:2000:inf", "--output", out / "report.html",
                             "--excel", out / "report.xlsx", "--csv", out / "particles.csv", "--title", "Cubes")
    assert code == 0, err
    assert "2 particles" in stdout and "wrote report" in stdout
    text = (out / "report.html").read_text()
    for heading in ("Summary", "Particle-size distribution", "Shape", "Phases", "Liberation", "Slices"):
        assert heading in _Report(text).sections
    assert _Report(text).title == "Cubes"
    sheets = pd.read_excel(out / "report.xlsx", sheet_name=None)
    assert list(sheets) == ["particles", "summary", "psd", "shape", "phases", "liberation"]
    # cube 1 is all dark; cube 2 has its x columns 18..21 of 14..21 bright: half of it
    particles = sheets["particles"].set_index("label")
    assert particles.loc[1, "phase_fraction_dark"] == 1.0 and particles.loc[2, "phase_fraction_bright"] == 0.5
    assert (out / "particles_liberation.csv").is_file()

    # the table again, without measuring; --auto-phases splits the two grey levels
    code, _, err = ps3d("report", "--table", out / "particles.csv", "-o", out / "again.html", "-q")
    assert code == 0, err
    assert "Liberation" in _Report((out / "again.html").read_text()).sections
    code, _, err = ps3d("report", scan_files["labels"], "--image", scan_files["scan"],
                        "--auto-phases", "2", "-o", out / "auto.html", "-q")
    assert code == 0, err
    phases = [row[0] for row in _Report((out / "auto.html").read_text()).sections["Phases"][0][1:]]
    assert re.fullmatch(r"darker phase \(grey < [\d,]+\)", phases[0]) and phases[1].startswith("brighter"), phases


@pytest.mark.parametrize("argv, fragments", [
    ([], ["LABELS", "--table"]),
    (["{labels}", "--phases", "ore:1:0"], ["--phases", "name:low:high"]),
    (["{labels}", "--phases", "ore:0:1", "--auto-phases", "2", "--image", "{scan}"], ["not allowed"]),
    (["{labels}", "--auto-phases", "9", "--image", "{scan}"], ["2 to 5"]),
    (["{labels}", "--auto-phases", "2"], ["--image"]),
    (["--table", "{table}", "--phases", "ore:0:1", "--image", "{scan}"], ["--table"]),
    (["{labels}", "-o", "{out}/report.pdf"], ["report format", ".html"]),
    (["{labels}", "--excel", "{out}/report.xls"], ["Excel", ".xlsx"]),
    (["{labels}", "--csv", "{out}/p.txt"], [".csv"]),
    (["{out}/missing.tif"], ["missing.tif"]),
    (["--table", "{scan}"], ["table format"]),
    (["--table", "{not_a_table}"], ["not a particle table"]),
    (["{labels}", "--image", "{small}"], ["shape"]),
    (["{labels}", "--phases", "ore:0:1", "--image", "{scan}", "--phase-names", "a,b"], ["--phases names its own"]),
    (["{labels}", "--phase-names", "a,b"], ["--phase-names", "--auto-phases"]),
    (["{labels}", "--image", "{scan}", "--auto-phases", "2", "--phase-names", "quartz"],
     ["--phase-names", "give 2 names"]),
    (["{labels}", "--image", "{scan}", "--auto-phases", "2", "--phase-names", "a,a"], ["--phase-names", "distinct"]),
    (["{labels}", "--image", "{scan}", "--auto-phases", "2", "--phase-names", "a b,c"], ["letters, digits"]),
    (["--table", "{table}", "--min-phase-fraction", "0.1"], ["--min-phase-fraction", "--table"]),
    (["{labels}", "--min-phase-fraction", "2"], ["--min-phase-fraction", "0 to 1"]),
    (["{labels}", "--pdf", "{out}/report.txt"], ["PDF report", ".pdf"]),
])
def test_cli_report_errors_are_one_line(ps3d, scan_files, tmp_path, argv, fragments):
    folder = scan_files["folder"]
    (folder / "not_a_table.csv").write_text("a,b\n1,2\n")
    (folder / "table.csv").write_text("label,volume_mm3,eq_diameter_mm\n1,1.0,1.2\n")
    if not (folder / "small.tif").exists():
        save_scan(np.zeros((4, 4, 4), np.uint16), folder / "small.tif", spacing=SPACING)
    names = {"labels": scan_files["labels"], "scan": scan_files["scan"], "out": tmp_path,
             "table": folder / "table.csv", "not_a_table": folder / "not_a_table.csv", "small": folder / "small.tif"}
    code, _, err = ps3d("report", *(a.format(**names) for a in argv))
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "report.html").exists() and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_demo_writes_the_mineralogy_report_and_workbook(ps3d, tmp_path):
    code, stdout, err = ps3d("demo", "--output", tmp_path, "--quiet")
    assert code == 0, err
    assert f"wrote tables (Excel): {tmp_path / 'report.xlsx'}" in stdout
    text = (tmp_path / "report.html").read_text()
    for heading in ("Shape", "Phases", "Liberation", "Accuracy against the ground truth"):
        assert heading in _Report(text).sections
    sheets = pd.read_excel(tmp_path / "report.xlsx", sheet_name=None)
    assert list(sheets) == ["particles", "summary", "psd", "shape", "phases", "liberation"]
    assert len(sheets["particles"]) == int(_summary_cells(text)["particles"].replace(",", ""))


# --------------------------------------------------------------------------- the bundled sample: cut grains, size


def _d_by_hand(sizes, weights, p):
    """dP of the sieve curve through the particles, as the report computed it before the cut-grain policy."""
    order = np.argsort(sizes, kind="stable")
    passing = np.cumsum(weights[order]) / weights.sum()
    return float(np.interp(p / 100, passing, sizes[order]))


def test_the_sample_report_leaves_cut_grains_out_and_include_cut_gives_the_old_numbers(ps3d, tmp_path):
    from ps3d_toolkit.data.sample import sample_path

    folder = sample_path()
    if folder is None:
        pytest.skip("the bundled sample's files are not installed (a wheel)")
    code, stdout, err = ps3d("report", folder / "labels.tif", "--image", folder / "scan.tif", "--auto-phases", "2",
                             "--phase-names", "quartz,magnetite", "-o", tmp_path / "report.html",
                             "--csv", tmp_path / "particles.csv")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "particles.csv")
    cut = table["touches_border"].to_numpy(bool)
    n_cut = int(cut.sum())
    assert 0 < n_cut < len(table) == 225
    assert f"{n_cut} cut by the scan border left out" in stdout
    summary = pd.read_csv(tmp_path / "particles_summary.csv").set_index("quantity")["value"]
    assert int(summary["n_cut_left_out"]) == n_cut and int(summary["n_in_statistics"]) == len(table) - n_cut
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    # the cut grains are explained once, in the reader's words, with the policy and no command-line flag
    sentence = (f"{n_cut} of the 225 particles are left out of the statistics because the scan's edge cuts them "
                "(their sizes and shapes are not their own); the statistics count the other "
                f"{225 - n_cut} as they are, without an edge correction.")
    assert text.count("left out of the statistics because") == 1 and text.count(html.escape(sentence)) == 1
    assert "--include-cut" not in text and "include_cut" not in text.split("<script")[0]
    # the statistics count the uncut grains only ...
    sizes, volumes = table["eq_diameter_mm"].to_numpy(), table["volume_mm3"].to_numpy()
    for p in (10, 50, 90):
        assert float(summary[f"d{p}_number_mm"]) == pytest.approx(_d_by_hand(sizes[~cut], np.ones((~cut).sum()), p))
        assert float(summary[f"d{p}_volume_mm"]) == pytest.approx(_d_by_hand(sizes[~cut], volumes[~cut], p))
    # ... and --include-cut gives the numbers of all the grains, as before the policy (d10 by number moves most)
    code, stdout, err = ps3d("report", "--table", tmp_path / "particles.csv", "--include-cut",
                             "-o", tmp_path / "all.html", "--csv", tmp_path / "all.csv")
    assert code == 0, err
    assert "statistics count all 225 particles" in stdout
    everything = pd.read_csv(tmp_path / "all_summary.csv").set_index("quantity")["value"]
    assert int(everything["n_cut_left_out"]) == 0 and int(everything["n_in_statistics"]) == 225
    for p in (10, 50, 90):
        assert float(everything[f"d{p}_number_mm"]) == pytest.approx(_d_by_hand(sizes, np.ones(len(sizes)), p))
        assert float(everything[f"d{p}_volume_mm"]) == pytest.approx(_d_by_hand(sizes, volumes, p))
    assert float(everything["total_volume_mm3"]) == pytest.approx(volumes.sum())
    assert float(everything["d10_number_mm"]) < 0.9 * float(summary["d10_number_mm"])
    # the phase names reach the table, the report and its tables
    assert {"phase_fraction_quartz", "liberation_quartz", "liberation_magnetite"} <= set(table.columns)
    phases = pd.read_csv(tmp_path / "particles_phases.csv")
    assert phases["phase"].tolist() == ["quartz", "magnetite"]
    assert "quartz: liberation" in text and "<td>magnetite</td>" in text
    all_text = (tmp_path / "all.html").read_text(encoding="utf-8")
    assert all_text.count(html.escape(f"All 225 particles are in the statistics, also the {n_cut} that the scan's "
                                      "edge cuts")) == 1
    assert "include-cut" not in all_text and "include_cut" not in all_text.split("<script")[0]


def test_the_sample_report_is_plotly_js_and_300_kb_with_a_compact_particle_table(sample, tmp_path):
    from plotly.offline import get_plotlyjs

    scan, truth = sample
    table = measure(truth, scan.image, spacing=scan.spacing, phases="auto", progress=False)
    path = write_report(table, tmp_path / "report.html", scan=scan, labels=truth)
    # plotly.js (4.8 MB) once; the six figures, two slice images and the tables take the rest
    assert path.stat().st_size <= len(get_plotlyjs().encode("utf-8")) + 300_000
    page = _Report(path.read_text(encoding="utf-8"))
    header = page.sections["Particles"][0][0]
    assert header[:3] == ["label", "eq. diameter, mm", "volume, mm³"] and len(header) <= 14
    assert not any("centroid" in h or "bbox" in h or "intensity" in h for h in header)
    # the sieve apertures are a standard series, every value with at most 3 significant digits
    apertures = [float(row[0]) for row in page.sections["Particle-size distribution"][1][1:]]
    assert set(apertures) <= {0.09, 0.106, 0.125, 0.15, 0.18, 0.212, 0.25, 0.3, 0.355, 0.425}
    for row in page.sections["Summary"][0]:
        if re.fullmatch(r"[\d.]+", row[1]):
            assert len(row[1].replace(".", "").lstrip("0")) <= 3, row
