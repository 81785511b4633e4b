"""Crafted pickles for every loader: a checkpoint, a .npy and a zarr must not run code."""

import pickle

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error
from ps3d_toolkit.core.errors import CorruptDataError, Ps3dError
from ps3d_toolkit.training.loop import TrainingConfig, train


class _Payload:
    """Unpickling this object creates ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_checkpoint(folder, marker):
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / "last.pt"
    torch.save({"model": _Payload(marker)}, last, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return last


def test_crafted_checkpoint_is_refused_by_the_api_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    last = _crafted_checkpoint(tmp_path / "run", marker)
    # the crafted file really is executable: an unsafe load creates the marker
    torch.load(last, weights_only=False)
    assert marker.exists()
    marker.unlink()
    config = TrainingConfig(output_dir=str(tmp_path / "run"), steps=1, batch_size=1, patch_size=32,
                            pool_size=1, val_every=0, seed=0, threads=1)
    with pytest.raises(CorruptDataError, match="cannot resume from .*last.pt"):
        train(config, progress=False)
    assert not marker.exists()
    assert last.read_bytes()  # the user's file is left as it was


def test_crafted_checkpoint_is_refused_by_the_cli(tmp_path, ps3d):
    marker = tmp_path / "pwned"
    _crafted_checkpoint(tmp_path / "run", marker)
    code, _, err = ps3d("train", "--output", str(tmp_path / "run"), "--steps", "1", "--batch-size", "1",
                  "--patch-size", "32", "--pool-size", "1", "--val-every", "0", "--threads", "1", "-q")
    assert_one_line_error(code, err, "cannot resume from", "last.pt")
    assert not marker.exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.pt"]


def test_checkpoint_without_the_run_state_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"model": {}}, folder / "last.pt")
    config = TrainingConfig(output_dir=str(folder), steps=1, batch_size=1, patch_size=32,
                            pool_size=1, val_every=0, seed=0, threads=1)
    with pytest.raises(CorruptDataError, match="lacks"):
        train(config, progress=False)


def test_npy_holding_pickled_objects_is_refused_unread(tmp_path):
    import numpy as np

    from ps3d_toolkit.io import load_scan

    marker = tmp_path / "pwned"
    path = tmp_path / "scan.npy"
    np.save(path, np.array([[[_Payload(marker)]]], dtype=object), allow_pickle=True)
    with pytest.raises(Ps3dError, match="scan.npy"):
        load_scan(path, spacing=0.01)
    assert not marker.exists()


def test_zarr_with_a_pickle_codec_is_refused_unread(tmp_path):
    import json

    from ps3d_toolkit.io import load_scan

    marker = tmp_path / "pwned"
    store = tmp_path / "scan.zarr"
    store.mkdir()
    (store / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [1, 1, 1], "chunks": [1, 1, 1], "dtype": "|O", "compressor": None,
        "fill_value": None, "filters": [{"id": "pickle"}], "order": "C", "dimension_separator": "."}))
    (store / "0.0.0").write_bytes(pickle.dumps(np.array([_Payload(marker)], dtype=object)))
    with pytest.raises(Ps3dError, match="scan.zarr"):
        scan = load_scan(store, spacing=0.01)
        np.asarray(scan.image)
    assert not marker.exists()
