"""Progress over named stages: the whole run, each stage timed."""

from __future__ import annotations

import re

import pytest

from ps3d_toolkit.core.progress import Stages


def test_stages_are_timed_in_order_and_a_repeated_stage_adds_up():
    stages = Stages("demo", enabled=False)
    for name in ("read", "network", "instances", "network", "write"):
        stages.start(name)
    stages.close()
    assert list(stages.seconds) == ["read", "network", "instances", "write"]
    assert all(seconds >= 0 for seconds in stages.seconds.values())


def test_a_stage_with_steps_moves_the_bar_by_them(capsys):
    stages = Stages("demo", enabled=True)
    stages.start("network", steps=4)
    for _ in range(4):
        stages.advance()
    stages.start("write")
    stages.close()
    err = capsys.readouterr().err
    assert "demo: network" in err and "demo: write" in err and "5/5" in err


def test_the_model_run_reports_its_stage_times():
    from ps3d_toolkit.data.synthetic import generate_scan
    from ps3d_toolkit.segmentation.methods.model import run_model

    scan = generate_scan((48, 48, 48), 12.0, seed=1)
    run = run_model(scan.image, spacing=scan.spacing, device="cpu", progress=False)
    assert list(run.stage_seconds) == ["load model", "sample", "estimate size", "read", "to network grid",
                                       "network", "back to scan grid", "instances"]
    assert run.stage_seconds["network"] == pytest.approx(run.network_seconds, rel=0.5, abs=0.5)


@pytest.mark.slow
def test_ps3d_segment_names_every_stage_from_reading_to_writing(ps3d, tmp_path, capsys):
    """A 12 Mvoxel scan: the bar's description names each stage as it runs, from read to write."""
    from ps3d_toolkit.data.synthetic import generate_scan
    from ps3d_toolkit.io import save_scan

    scan = generate_scan((230, 230, 230), 24.0, seed=1)
    assert scan.image.size > 12_000_000
    source = save_scan(scan.image, tmp_path / "scan.zarr", spacing=scan.spacing,
                       particle_size_mm=scan.particle_size_mm)
    code, _, err = ps3d("segment", source, "-o", tmp_path / "labels.zarr", "--device", "cpu")
    assert code == 0, err
    shown = re.findall(r"model: ([a-z ]+?):", err)
    names = list(dict.fromkeys(shown))
    assert names == ["read", "load model", "sample", "to network grid", "network", "back to scan grid",
                     "instances", "write"]
