"""Tests of the ``ps3d`` command line (ps3d_toolkit.cli), run in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ps3d_toolkit import cli
from ps3d_toolkit.cli import app
from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.io import load_labels, load_scan, save_labels, save_scan

SPACING = 0.01


@pytest.fixture(scope="module")
def phantom():
    return generate_scan((48, 48, 48), mean_diameter_vox=12, seed=1, preset="easy", spacing=SPACING)


@pytest.fixture(scope="module")
def files(phantom, tmp_path_factory):
    """The phantom as a TIFF with spacing, a zarr store, a bare .npy and its labels."""
    folder = tmp_path_factory.mktemp("scans")
    paths = {
        "tif": save_scan(phantom.image, folder / "scan.tif", spacing=SPACING),
        "zarr": save_scan(phantom.image, folder / "scan.zarr", spacing=SPACING),
        "bare": folder / "bare" / "scan.npy",
        "truth": save_labels(phantom.labels, folder / "truth.tif", spacing=SPACING),
    }
    paths["bare"].parent.mkdir()
    np.save(paths["bare"], phantom.image)  # no spacing anywhere
    return paths


def run(capsys, *argv):
    """Run ``ps3d argv`` in-process; return (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ps3d: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# --------------------------------------------------------------------------- segment


def test_segment_tif_to_npy(capsys, files, phantom, tmp_path):
    out = tmp_path / "labels.npy"
    code, stdout, err = run(capsys, "segment", files["tif"], "--spacing", "0.01", "--output", out)
    assert code == 0, err
    labels = np.load(out)
    assert labels.dtype == np.uint32
    assert labels.shape == phantom.image.shape
    # an easy phantom: the classic pipeline finds most of the grains
    assert 0.5 * phantom.labels.max() <= labels.max() <= 1.5 * phantom.labels.max()
    assert str(out) in stdout


@pytest.mark.parametrize("source, target", [("zarr", "labels.zarr"), ("zarr", "labels.tif"), ("tif", "labels.tif")])
def test_segment_reads_the_stored_spacing_and_writes_by_extension(capsys, files, phantom, tmp_path, source, target):
    out = tmp_path / target
    code, stdout, err = run(capsys, "segment", files[source], "--output", out, "--quiet")
    assert code == 0, err
    assert stdout == "" and err == ""  # --quiet: no messages, no progress bars
    labels = load_labels(out)
    assert labels.dtype == np.uint32 and labels.shape == phantom.image.shape
    assert labels.max() > 0
    assert load_scan(out).spacing == (SPACING,) * 3


def test_segment_inference_diameter_reaches_the_model(capsys, files, tmp_path, monkeypatch):
    import ps3d_toolkit.segmentation

    seen = {}

    def fake_segment(image, **kwargs):
        seen.update(kwargs)
        return np.ones(image.shape, np.uint32)

    monkeypatch.setattr(ps3d_toolkit.segmentation, "segment", fake_segment)
    out = tmp_path / "labels.npy"
    argv = ["segment", files["tif"], "--method", "model", "--inference-diameter-vox", "16", "-o", out, "-q"]
    assert run(capsys, *argv)[0] == 0
    assert seen["inference_diameter_vox"] == 16.0 and seen["method"] == "model"
    assert seen["spacing"] == (SPACING,) * 3          # checked once, handed on as a tuple
    np.testing.assert_array_equal(np.load(out), 1)


@pytest.mark.parametrize("argv, old", [
    (["segment", "scan.tif", "-o", "l.npy", "--network-diameter", "16"], "--network-diameter"),
    (["train", "--target-diameter", "20"], "--target-diameter"),
    (["export", "a.pt", "b.pt", "--inference-diameter", "20"], "--inference-diameter"),
])
def test_renamed_options_are_refused_under_their_old_names(capsys, argv, old):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, "unrecognized arguments", old)


def test_segment_same_result_for_every_input_format(capsys, files, tmp_path):
    outputs = []
    for source in ("tif", "zarr"):
        out = tmp_path / f"{source}.npy"
        assert run(capsys, "segment", files[source], "-o", out, "-q")[0] == 0
        outputs.append(np.load(out))
    np.testing.assert_array_equal(*outputs)


def test_segment_warns_in_one_line_when_spacing_overrides_the_file(capsys, files, tmp_path):
    code, _, err = run(capsys, "segment", files["tif"], "--spacing", "0.02", "-o", tmp_path / "l.npy", "-q")
    assert code == 0
    warning_lines = [line for line in err.splitlines() if line]
    assert len(warning_lines) == 1
    assert warning_lines[0].startswith("ps3d: warning: --spacing (0.02, 0.02, 0.02) overrides")


def test_segment_anisotropic_spacing_is_parsed_z_y_x(capsys, files, tmp_path):
    out = tmp_path / "labels.tif"
    code = cli.main(["segment", str(files["bare"]), "--spacing", "0.02, 0.01,0.01", "-o", str(out), "-q"])
    assert code == 0
    assert load_scan(out).spacing == (0.02, 0.01, 0.01)


# --------------------------------------------------------------------------- errors


def _corrupt(folder: Path) -> Path:
    path = folder / "corrupt.tif"
    path.write_bytes(b"II*\x00this is not a TIFF at all" * 10)
    return path


ERROR_CASES = {
    # name: (argv builder(files, folder) -> argv, fragments expected in the message)
    "missing file": (lambda f, d: ["segment", d / "nope.tif", "--spacing", "0.01"], ["not found", "nope.tif"]),
    "unknown input extension": (
        lambda f, d: ["segment", _touch(d / "scan.xyz"), "--spacing", "0.01"], ["unknown", "scan.xyz"]),
    "bad spacing": (lambda f, d: ["segment", f["tif"], "--spacing", "0,1,1"], ["--spacing", "'0,1,1'"]),
    "spacing not a number": (lambda f, d: ["segment", f["tif"], "--spacing", "abc"], ["--spacing"]),
    "no spacing anywhere": (lambda f, d: ["segment", f["bare"]], ["spacing"]),
    "unknown method": (lambda f, d: ["segment", f["tif"], "--method", "magic"], ["--method", "magic"]),
    "bad particle size": (lambda f, d: ["segment", f["tif"], "--particle-size", "-1"], ["--particle-size"]),
    "corrupt file": (lambda f, d: ["segment", _corrupt(d), "--spacing", "0.01"], ["cannot read", "corrupt.tif"]),
    "model option with a classic method": (
        lambda f, d: ["segment", f["tif"], "--method", "otsu-watershed", "--inference-diameter-vox", "20"],
        ["--inference-diameter-vox", "otsu-watershed"]),
    "bad inference diameter": (lambda f, d: ["segment", f["tif"], "--inference-diameter-vox", "0"],
                               ["--inference-diameter-vox", "positive"]),
}


def _touch(path: Path) -> Path:
    path.write_bytes(b"\x00" * 64)
    return path


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_exit_2_with_one_line_and_keep_existing_output(capsys, files, tmp_path, case):
    build, fragments = ERROR_CASES[case]
    out = tmp_path / "labels.npy"
    out.write_bytes(b"previous result")
    # --overwrite: the error is the input's, and the output it allows to replace is kept all the same
    code, stdout, err = run(capsys, *build(files, tmp_path), "--output", out, "--overwrite")
    assert_one_line_error(code, err, *fragments)
    assert out.read_bytes() == b"previous result"


def test_unknown_output_extension_fails_before_any_work(capsys, files, tmp_path, monkeypatch):
    import ps3d_toolkit.segmentation

    monkeypatch.setattr(ps3d_toolkit.segmentation, "segment", lambda *a, **k: pytest.fail("segmented anyway"))
    out = tmp_path / "labels.png"
    out.write_bytes(b"keep me")
    code, _, err = run(capsys, "segment", files["tif"], "--output", out)
    assert_one_line_error(code, err, "labels.png", ".tif")
    assert out.read_bytes() == b"keep me"


def test_model_method_without_weights_is_a_clear_error(capsys, files, tmp_path, monkeypatch):
    import ps3d_toolkit.segmentation.model

    monkeypatch.setattr(ps3d_toolkit.segmentation.model, "weights_available", lambda path=None: False)
    code, _, err = run(capsys, "segment", files["tif"], "--method", "model", "-o", tmp_path / "l.npy")
    assert_one_line_error(code, err, "model", "otsu-watershed")


@pytest.mark.parametrize("flag, expected", [(None, "auto"), ("--tta", True), ("--no-tta", False)])
def test_tta_flag_reaches_the_model(capsys, files, tmp_path, monkeypatch, flag, expected):
    import ps3d_toolkit.segmentation

    seen = {}

    def fake_segment(image, **kwargs):
        seen.update(kwargs)
        return np.zeros(image.shape, np.uint32)

    monkeypatch.setattr(ps3d_toolkit.segmentation, "segment", fake_segment)
    argv = ["segment", files["tif"], "--method", "model", "-o", tmp_path / "l.npy"]
    code, _, err = run(capsys, *argv, *([flag] if flag else []))
    assert code == 0, err
    assert seen["tta"] == expected


def test_tta_with_a_baseline_is_a_clear_error(capsys, files, tmp_path):
    code, _, err = run(capsys, "segment", files["tif"], "--method", "otsu-watershed", "--no-tta",
                       "-o", tmp_path / "l.npy")
    assert_one_line_error(code, err, "--tta", "otsu-watershed")


def test_usage_errors_are_one_line(capsys):
    assert_one_line_error(*run(capsys)[::2], "COMMAND")
    assert_one_line_error(*run(capsys, "segment", "scan.tif")[::2], "--output")
    assert_one_line_error(*run(capsys, "frobnicate")[::2], "frobnicate")


def test_debug_env_shows_the_traceback(files, tmp_path, monkeypatch):
    monkeypatch.setenv("PS3D_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(["segment", str(tmp_path / "nope.tif"), "--spacing", "0.01", "-o", str(tmp_path / "l.npy")])


# --------------------------------------------------------------------------- evaluate, convert, measure


def test_evaluate_prints_metrics_and_json(capsys, files, phantom, tmp_path):
    code, stdout, err = run(capsys, "evaluate", files["truth"], files["truth"], "--json")
    assert code == 0, err
    metrics = json.loads(stdout)
    assert metrics["f1_50"] == metrics["pq"] == 1.0
    assert metrics["n_gt"] == metrics["n_pred"] == len(np.unique(phantom.labels)) - 1

    # drop one particle: one miss, count error -1
    pred = phantom.labels.copy()
    pred[pred == 1] = 0
    pred_path = save_labels(pred, tmp_path / "pred.npy")
    code, stdout, _ = run(capsys, "evaluate", files["truth"], pred_path)
    assert code == 0
    lines = dict(line.split(None, 1) for line in stdout.strip().splitlines())
    assert int(lines["count_error"]) == -1
    assert float(lines["recall_50"]) < 1.0 == float(lines["precision_50"])


def test_evaluate_shape_mismatch_is_one_line(capsys, files, tmp_path):
    other = save_labels(np.ones((4, 4, 4), np.uint32), tmp_path / "small.npy")
    code, _, err = run(capsys, "evaluate", files["truth"], other)
    assert_one_line_error(code, err, "shape")


def test_convert_keeps_values_and_spacing(capsys, files, phantom, tmp_path):
    out = tmp_path / "copy.nii.gz"
    code, stdout, err = run(capsys, "convert", files["zarr"], out, "-q")
    assert code == 0, err
    scan = load_scan(out)
    np.testing.assert_array_equal(np.asarray(scan.image), phantom.image)
    assert scan.spacing == (SPACING,) * 3


def test_convert_needs_a_spacing_for_bare_input(capsys, files, tmp_path):
    code, _, err = run(capsys, "convert", files["bare"], tmp_path / "x.tif")
    assert_one_line_error(code, err, "spacing")
    assert run(capsys, "convert", files["bare"], tmp_path / "x.tif", "--spacing", "0.01", "-q")[0] == 0
    assert load_scan(tmp_path / "x.tif").spacing == (SPACING,) * 3


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_measure_writes_one_row_per_particle(capsys, files, phantom, tmp_path, suffix):
    out = tmp_path / f"particles{suffix}"
    code, _, err = run(capsys, "measure", files["truth"], "--image", files["tif"], "--output", out, "-q")
    assert code == 0, err
    table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    ids, counts = np.unique(phantom.labels[phantom.labels > 0], return_counts=True)
    assert sorted(table["label"]) == ids.tolist()
    np.testing.assert_allclose(table.sort_values("label")["volume_mm3"], counts * SPACING**3)
    assert "intensity_mean" in table.columns


def test_measure_errors(capsys, files, tmp_path):
    bare_labels = tmp_path / "bare_labels.npy"
    np.save(bare_labels, np.ones((4, 4, 4), np.uint32))
    assert_one_line_error(*run(capsys, "measure", bare_labels, "-o", tmp_path / "t.csv")[::2], "spacing")
    assert_one_line_error(*run(capsys, "measure", files["truth"], "-o", tmp_path / "t.xlsx")[::2], ".csv")


def test_segment_says_the_automatic_grains_and_mask_once(capsys, files, tmp_path):
    code, out, err = run(capsys, "segment", files["tif"], "--method", "otsu-watershed", "--grains", "auto",
                         "--mask", "auto", "-o", tmp_path / "labels.tif")
    assert code == 0, err
    said = out + err
    reason = json.loads((tmp_path / "labels.tif.ps3d.json").read_text())["grains_reason"]
    assert reason.startswith("auto: grains are brighter") and said.count(reason.removeprefix("auto: ")) == 1
    assert said.count("sample mask:") == 1 and "grains='auto'" not in said


# --------------------------------------------------------------------------- demo, registry, help


@pytest.mark.slow
def test_demo_writes_labels_table_and_report(capsys, tmp_path):
    out = tmp_path / "demo"
    code, stdout, err = run(capsys, "demo", "--output", out, "--quiet")
    assert code == 0, err
    for name in ("labels.tif", "particles.csv", "report.html", "report.xlsx"):
        assert (out / name).is_file()
        assert str(out / name) in stdout
    labels = load_labels(out / "labels.tif")
    assert labels.dtype == np.uint32 and labels.shape == (128, 128, 128)
    table = pd.read_csv(out / "particles.csv")
    assert len(table) == len(np.unique(labels)) - 1 > 50
    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report
    # plotly.js inline, so that the report opens offline
    assert "Plotly.newPlot" in report and "<script src=" not in report
    assert "F1 at IoU &gt; 0.5" in report or "F1 at IoU > 0.5" in report
    assert len(report) < 10 * 2**20


def test_demo_refuses_a_file_as_output_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    assert_one_line_error(*run(capsys, "demo", "--output", blocker, "-q")[::2], "folder")
    assert blocker.read_text() == "keep"


def _command(name, add_arguments, run_command):
    """A subcommand object with the attributes ps3d's command modules have."""
    import types

    return types.SimpleNamespace(__name__=f"tests.{name}", __doc__=f"The {name} command.",
                                 EXAMPLES=f"ps3d {name}", add_arguments=add_arguments, run=run_command)


def test_a_registered_command_is_parsed_and_run(capsys, monkeypatch):
    hello = _command("hello", lambda parser: parser.add_argument("--name", default="world"),
                     lambda args: print(f"hello {args.name}") or 0)
    monkeypatch.setattr(app, "SUBCOMMANDS", app.SUBCOMMANDS + [hello])
    assert run(capsys, "hello", "--name", "ps3d")[:2] == (0, "hello ps3d\n")
    assert "the hello command" in run(capsys, "--help")[1]
    assert_one_line_error(*run(capsys, "hello", "--nme", "x")[::2], "--nme")


def test_the_parser_does_not_import_torch():
    code = ("import sys; from ps3d_toolkit import cli; cli.build_parser(); cli.main(['export', '--help']); "
            "cli.main(['train', '--help']); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


@pytest.mark.slow
def test_train_help_comes_from_the_model_package(capsys):
    code, stdout, _ = run(capsys, "train", "--help")
    assert code == 0
    assert stdout.startswith("usage: ps3d train") and "--steps" in stdout


@pytest.mark.parametrize("command", ["demo", "segment", "measure", "evaluate", "report", "convert", "export"])
def test_every_subcommand_has_help_with_an_example(capsys, command):
    code, stdout, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"ps3d {command}" in stdout.split("example", 1)[1]


def test_installed_console_script_runs():
    script = Path(sys.executable).with_name("ps3d")
    assert script.is_file(), "the ps3d console script is not installed: pip install -e ."
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("demo", "segment", "measure", "evaluate", "report", "convert", "train", "export"):
        assert command in done.stdout


# --------------------------------------------------------------------------- train, export


def test_train_passes_its_options_to_the_training_config(capsys, tmp_path, monkeypatch):
    import ps3d_toolkit.training.loop

    seen = []
    monkeypatch.setattr(ps3d_toolkit.training.loop, "train", lambda config, **kw: seen.append((config, kw)) or tmp_path)
    code, stdout, err = run(capsys, "train", "--output", tmp_path / "r", "--train-diameter-vox", "20",
                            "--workers", "3", "--max-minutes", "1.5", "--quiet")
    assert code == 0, err
    config, options = seen[-1]
    assert config.network == {"train_diameter_vox": 20.0} and config.output_dir == str(tmp_path / "r")
    assert config.workers == 3 and config.time_limit_s == pytest.approx(90.0)
    assert options["progress"] is False and options["command"].startswith("ps3d train")
    assert str(tmp_path) in stdout
    assert run(capsys, "train", "--output", tmp_path / "r", "-q")[0] == 0
    assert seen[-1][0].network == {} and seen[-1][0].time_limit_s is None
    assert_one_line_error(*run(capsys, "train", "--train-diameter-vox", "0")[::2], "--train-diameter-vox")


def test_export_hands_its_arguments_to_export_weights(capsys, tmp_path, monkeypatch):
    import ps3d_toolkit.training.export

    calls = []

    def fake_export(src, dst, **options):
        calls.append((src, dst, options))
        return Path(dst)

    monkeypatch.setattr(ps3d_toolkit.training.export, "export_weights", fake_export)
    src, dst = tmp_path / "model.pt", tmp_path / "out.pt"
    words = ["export", str(src), str(dst), "--note", "stage 5", "--inference-diameter-vox", "20",
             "--core-threshold", "0.75"]
    monkeypatch.setattr("sys.argv", ["ps3d", *words])
    code, stdout, err = run(capsys, *words)
    assert code == 0, err
    command = f"ps3d export {src} {dst} --note 'stage 5' --inference-diameter-vox 20 --core-threshold 0.75"
    assert calls == [(src, dst, {"note": "stage 5", "inference_diameter_vox": 20.0, "core_threshold": 0.75,
                                 "command": command})]
    assert stdout == f"wrote {dst}\n"
    monkeypatch.setattr("sys.argv", ["ps3d", "export", str(src), str(dst), "-q"])
    assert run(capsys, "export", src, dst, "-q")[:2] == (0, "")
    assert calls[-1][2] == {"note": None, "inference_diameter_vox": None, "core_threshold": None,
                            "command": f"ps3d export {src} {dst} -q"}


def test_command_line_records_the_subcommand_and_quotes_its_words(monkeypatch):
    from ps3d_toolkit.cli.args import command_line

    monkeypatch.setattr("sys.argv", ["ps3d", "export", "src.pt", "first.pt", "--note", "a b"])
    assert command_line("export") == "ps3d export src.pt first.pt --note 'a b'"
    # run without the subcommand in argv (e.g. through another entry point): it is put in
    monkeypatch.setattr("sys.argv", ["train.py", "--steps", "3"])
    assert command_line("train") == "ps3d train --steps 3"


@pytest.mark.parametrize("extra, fragment", [(["--core-threshold", "1.5"], "--core-threshold"),
                                             (["--inference-diameter-vox", "-3"], "--inference-diameter-vox")])
def test_export_refuses_bad_values_before_any_work(capsys, tmp_path, monkeypatch, extra, fragment):
    import ps3d_toolkit.training.export

    monkeypatch.setattr(ps3d_toolkit.training.export, "export_weights", lambda *a, **k: pytest.fail("exported"))
    assert_one_line_error(*run(capsys, "export", tmp_path / "a.pt", tmp_path / "b.pt", *extra)[::2], fragment)


def test_export_of_a_missing_file_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "export", tmp_path / "nope.pt", tmp_path / "out.pt")
    assert_one_line_error(code, err, "nope.pt")
    assert not (tmp_path / "out.pt").exists()


# --------------------------------------------------------------------------- the library's messages


@pytest.fixture
def chatty(monkeypatch):
    """A subcommand ``chatty`` whose library call logs at DEBUG, INFO and WARNING."""
    import logging

    from ps3d_toolkit.cli.args import add_verbosity

    def run_chatty(args):
        log = logging.getLogger("ps3d_toolkit.segmentation.fake")
        log.debug("a detail")
        log.info("estimated particle size 0.2 mm\n(from the Otsu mask)")
        log.warning("few particles")
        return 0

    monkeypatch.setattr(app, "SUBCOMMANDS", app.SUBCOMMANDS + [_command("chatty", add_verbosity, run_chatty)])


@pytest.mark.parametrize("flag, expected", [
    (None, ["ps3d: estimated particle size 0.2 mm (from the Otsu mask)", "ps3d: warning: few particles"]),
    ("--quiet", ["ps3d: warning: few particles"]),
    ("--verbose", ["ps3d: debug: a detail", "ps3d: estimated particle size 0.2 mm (from the Otsu mask)",
                   "ps3d: warning: few particles"]),
])
def test_library_log_messages_are_one_line_each_on_stderr(capsys, chatty, flag, expected):
    import logging

    code, stdout, err = run(capsys, "chatty", *([flag] if flag else []))
    assert code == 0 and stdout == ""
    assert err.splitlines() == expected
    assert logging.getLogger("ps3d_toolkit").handlers == []     # nothing left behind after the command


# --------------------------------------------------------------------------- convert: spacing and folders


def test_convert_without_a_spacing_names_the_flag(capsys, files, tmp_path):
    code, _, err = run(capsys, "convert", files["bare"], tmp_path / "x.zarr")
    assert_one_line_error(code, err, "pass --spacing")
    assert "spacing=" not in err


def test_convert_reads_a_folder_of_tiff_slices(capsys, phantom, tmp_path):
    import tifffile

    slices = tmp_path / "slices"
    slices.mkdir()
    for index, plane in enumerate(phantom.image):
        tifffile.imwrite(slices / f"slice_{index:03d}.tif", plane)
    code, _, err = run(capsys, "convert", slices, tmp_path / "scan.zarr", "--spacing", "0.01", "-q")
    assert code == 0, err
    scan = load_scan(tmp_path / "scan.zarr")
    np.testing.assert_array_equal(np.asarray(scan.image), phantom.image)
    assert scan.spacing == (SPACING,) * 3


@pytest.mark.parametrize("existing", [False, True])
def test_convert_to_a_folder_of_slices_is_refused_with_the_reason(capsys, files, tmp_path, existing):
    target = tmp_path / "slices"
    if existing:
        target.mkdir()
    code, _, err = run(capsys, "convert", files["tif"], target)
    assert_one_line_error(code, err, "folder of TIFF slices", "slices.tif", "slices.zarr")
    assert target.exists() == existing and (not existing or not any(target.iterdir()))


def test_convert_help_says_which_formats_it_reads_and_writes(capsys):
    code, stdout, _ = run(capsys, "convert", "--help")
    assert code == 0
    assert "folder of 2D TIFF slices" in stdout and "not a folder of slices" in stdout


# --------------------------------------------------------------------------- a reader that goes away


@pytest.mark.parametrize("argv", [["evaluate", "TRUTH", "TRUTH"], ["evaluate", "TRUTH", "TRUTH", "--json"],
                                  ["--help"], ["convert", "--help"]])
def test_a_closed_pipe_ends_quietly_with_the_sigpipe_code(files, argv):
    """``ps3d ... | head -1``: stdout's reader is gone before ps3d writes; no 'Broken pipe', no error code 2."""
    import os

    script = Path(sys.executable).with_name("ps3d")
    read_end, write_end = os.pipe()
    os.close(read_end)                      # the reader has already gone: every write fails
    try:
        done = subprocess.run([str(script), *[str(files["truth"]) if a == "TRUTH" else a for a in argv]],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    if "--help" in argv:    # argparse drops help it cannot write; ps3d ends as after any help
        assert done.returncode in (0, app.EXIT_PIPE_CLOSED)
    else:
        assert done.returncode == app.EXIT_PIPE_CLOSED == 141


# --------------------------------------------------------------------------- CSV numbers


def test_csv_tables_carry_no_float_noise_and_read_back_within_1e_9(tmp_path):
    from ps3d_toolkit.io import read_table, save_table

    rng = np.random.default_rng(0)
    values = np.concatenate([[0.0015810000000000002, 0.1 + 0.2, 1 / 3, 0.0, -2.5e-7, 123456.789012345],
                             rng.lognormal(0, 6, 200) * rng.choice([-1, 1], 200)])
    table = pd.DataFrame({"label": np.arange(1, values.size + 1), "eq_diameter_mm": values,
                          "volume_mm3": values ** 2, "touches_border": values > 0})
    text = save_table(table, tmp_path / "t.csv").read_text()
    assert "0.0015810000000000002" not in text and "0.30000000000000004" not in text
    assert "0.001581," in text
    back = read_table(tmp_path / "t.csv")
    np.testing.assert_allclose(back["eq_diameter_mm"], values, rtol=1e-9, atol=0)
    np.testing.assert_allclose(back["volume_mm3"], values ** 2, rtol=1e-9, atol=0)
    assert back["label"].dtype.kind == "i" and back["touches_border"].tolist() == table["touches_border"].tolist()


def test_measured_csv_matches_the_parquet_within_1e_9(capsys, files, tmp_path):
    for suffix in (".csv", ".parquet"):
        code, _, err = run(capsys, "measure", files["truth"], "--image", files["tif"], "-o",
                           tmp_path / f"particles{suffix}", "-q")
        assert code == 0, err
    csv, parquet = pd.read_csv(tmp_path / "particles.csv"), pd.read_parquet(tmp_path / "particles.parquet")
    assert list(csv.columns) == list(parquet.columns)
    floats = [c for c in parquet.columns if parquet[c].dtype.kind == "f"]
    assert floats
    for column in floats:
        np.testing.assert_allclose(csv[column], parquet[column], rtol=1e-9, atol=1e-300, err_msg=column)
    longest = max(len(cell) for line in (tmp_path / "particles.csv").read_text().splitlines()[1:]
                  for cell in line.split(","))
    assert longest <= 16      # 10 significant digits, a sign, a point and an exponent at most


@pytest.mark.parametrize("message, expected", [
    ("spacing is not stored in x; pass spacing=... in mm", "spacing is not stored in x; pass --spacing ... in mm"),
    ("no shipped model weights; use method='otsu-watershed'", "no shipped model weights; use --method otsu-watershed"),
    ("pass overwrite=True (overwrite=True)", "pass --overwrite"),
])
def test_library_keywords_are_named_as_their_flags(message, expected):
    assert app._one_line(message) == expected
