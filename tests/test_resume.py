"""Runs left overnight: resume, one writer per output, Dask addresses (issue 24, bad cases 1-6).

Each case is its own reproduction through ``ps3d segment --chunk-size``: the exit code, the one
line, and that nothing was replaced or left behind; a resume gives the labels of a fresh run.
A run "killed" part-way is a :class:`KeyboardInterrupt` raised when a block is recorded as done
(what Ctrl-C does; the finished blocks stay in the work folder).
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, listing as _listing

from ps3d_toolkit.core.errors import InputError, OutputError
from ps3d_toolkit.core.locks import lock_path
from ps3d_toolkit.io import load_labels, save_scan
from ps3d_toolkit.segmentation.chunked import segment_chunked
from ps3d_toolkit.segmentation.chunked import work as work_module

CHUNK = 48  # 8 blocks of the 96^3 crop (over two particle diameters: no warning)




@pytest.fixture(scope="module")
def crops(sample):
    """The bundled sample cropped to 96^3, and the same crop turned upside down (same shape and histogram)."""
    scan, _ = sample
    upright = np.ascontiguousarray(scan.image[:96, :96, :96])
    return upright, np.ascontiguousarray(upright[::-1]), scan.spacing, scan.particle_size_mm


@pytest.fixture
def scans(tmp_path, crops):
    upright, turned, spacing, size = crops
    return (save_scan(upright, tmp_path / "upright.zarr", spacing=spacing, particle_size_mm=size),
            save_scan(turned, tmp_path / "turned.zarr", spacing=spacing, particle_size_mm=size))


@pytest.fixture(scope="module")
def fresh(crops):
    """Each crop's labels from an uninterrupted chunked run, in memory."""
    upright, turned, spacing, size = crops
    return [segment_chunked(image, spacing=spacing, particle_size_mm=size, method="otsu-watershed",
                            chunk_size=CHUNK, progress=False) for image in (upright, turned)]


def _segment(ps3d, scan, output, *extra):
    return ps3d("segment", scan, "-o", output, "--method", "otsu-watershed", "--chunk-size", CHUNK, "-q", *extra)


@pytest.fixture
def killed_after(monkeypatch):
    """``killed_after(n)``: the next run stops (as on Ctrl-C) when its block n+1 would be recorded."""
    finish = work_module.Work.finish

    def arm(n: int):
        done = []

        def finish_then_die(self, index, count):
            if len(done) == n:
                raise KeyboardInterrupt
            done.append(index)
            finish(self, index, count)

        monkeypatch.setattr(work_module.Work, "finish", finish_then_die)
        return lambda: monkeypatch.setattr(work_module.Work, "finish", finish)

    return arm


def _interrupted(ps3d, killed_after, scan, output, blocks=5):
    disarm = killed_after(blocks)
    code, _, err = _segment(ps3d, scan, output)
    disarm()
    assert code == 130, err
    work = output.with_name(output.name + ".ps3d-work")
    assert len(json.loads((work / "blocks.json").read_text())["blocks"]) == blocks
    assert not output.exists() and not lock_path(output).exists()
    return work


# ---------------------------------------------------------------------------------------- case 1


def test_resume_on_the_turned_round_scan_is_refused_then_continues_the_right_one(ps3d, tmp_path, scans, fresh,
                                                                                 killed_after):
    upright, turned = scans
    output = tmp_path / "labels.zarr"
    work = _interrupted(ps3d, killed_after, upright, output)
    before = _listing(work)
    code, _, err = _segment(ps3d, turned, output, "--resume")
    assert_one_line_error(code, err, "the input differs from the interrupted run's", "values",
                          "without --resume (with --overwrite)")
    assert _listing(work) == before and not output.exists() and not lock_path(output).exists()
    code, _, err = _segment(ps3d, upright, output, "--resume")
    assert code == 0, err
    np.testing.assert_array_equal(load_labels(output), fresh[0])
    assert not work.exists()


def test_a_fresh_run_on_the_turned_scan_after_a_refusal_gets_that_scans_own_labels(ps3d, tmp_path, scans, fresh,
                                                                                   killed_after):
    upright, turned = scans
    output = tmp_path / "labels.zarr"
    _interrupted(ps3d, killed_after, upright, output, blocks=1)
    code, _, err = _segment(ps3d, turned, output)  # neither --resume nor --overwrite: the old blocks are dropped
    assert code == 0, err
    np.testing.assert_array_equal(load_labels(output), fresh[1])


def test_the_fingerprint_names_what_differs(crops):
    upright, turned, _, _ = crops
    same = work_module.input_fingerprint(upright)
    assert work_module.fingerprint_differences(same, work_module.input_fingerprint(upright.copy())) == []
    assert work_module.fingerprint_differences(same, work_module.input_fingerprint(turned)) == [
        "values (a hash of a sample of them)"]
    assert "shape" in work_module.fingerprint_differences(same, work_module.input_fingerprint(upright[:64]))[0]


# ---------------------------------------------------------------------------------------- case 2


def test_resume_never_replaces_a_finished_output(ps3d, tmp_path, scans, fresh):
    upright, turned = scans
    output = tmp_path / "fin.zarr"
    assert _segment(ps3d, upright, output)[0] == 0
    before = _listing(tmp_path)
    code, _, err = _segment(ps3d, turned, output, "--resume")
    assert_one_line_error(code, err, str(output), "--overwrite")
    assert _listing(tmp_path) == before
    with pytest.raises(OutputError, match="never replaces a finished one; pass overwrite=True"):
        segment_chunked(np.asarray(load_labels(output)) * 0, spacing=0.01, particle_size_mm=0.1,
                        method="otsu-watershed", chunk_size=CHUNK, output=output, resume=True, progress=False)
    assert _listing(tmp_path) == before
    np.testing.assert_array_equal(load_labels(output), fresh[0])


# ---------------------------------------------------------------------------------------- case 3


@pytest.mark.parametrize("ledger, why", [
    ("garbage {", "not JSON"),
    ("", "an empty file"),
    ("[1, 2]", "a JSON list"),
    (None, "not a whole number"),  # the interrupted run's own ledger with a block count of 2.5
])
def test_a_damaged_ledger_is_a_one_line_refusal(ps3d, tmp_path, scans, killed_after, ledger, why):
    upright, _ = scans
    output = tmp_path / "labels.zarr"
    work = _interrupted(ps3d, killed_after, upright, output, blocks=2)
    path = work / "blocks.json"
    if ledger is None:
        record = json.loads(path.read_text())
        record["blocks"][next(iter(record["blocks"]))] = 2.5
        ledger = json.dumps(record)
    path.write_text(ledger)
    before = _listing(tmp_path)
    code, _, err = _segment(ps3d, upright, output, "--resume")
    assert_one_line_error(code, err, str(path), why, f"delete {work}", "--overwrite")
    assert _listing(tmp_path) == before


# ---------------------------------------------------------------------------------------- case 4


@pytest.mark.parametrize("damage", ["delete a chunk", "garble a chunk", "delete a shells file"])
def test_damaged_block_files_are_computed_again(ps3d, tmp_path, scans, fresh, killed_after, damage):
    upright, _ = scans
    output = tmp_path / "labels.zarr"
    work = _interrupted(ps3d, killed_after, upright, output, blocks=6)
    if damage == "delete a shells file":
        (work / "shells" / "0,0,1.npz").unlink()  # a block whose particles cross into block 0,0,0
    elif damage == "delete a chunk":
        (work / "labels.zarr" / "0.0.1").unlink()
    else:
        (work / "labels.zarr" / "0.0.1").write_bytes(b"\x00not a chunk")
    code, _, err = _segment(ps3d, upright, output, "--resume")
    assert code == 0, err
    assert "1 finished block(s)" in err and "computing them again" in err
    np.testing.assert_array_equal(load_labels(output), fresh[0])


# ---------------------------------------------------------------------------------------- settings


def test_a_resume_with_other_settings_names_only_what_differs(ps3d, tmp_path, scans, killed_after):
    upright, _ = scans
    output = tmp_path / "labels.zarr"
    _interrupted(ps3d, killed_after, upright, output, blocks=2)
    code, _, err = _segment(ps3d, upright, output, "--resume", "--grains", "darker")
    assert_one_line_error(code, err, "the interrupted run used other settings: ",
                          "grains 'brighter' (now 'darker')")  # and the grain threshold that follows from it
    assert "spacing" not in err and "method" not in err and "shape" not in err


# ---------------------------------------------------------------------------------------- failures before a block


def test_a_failure_before_the_first_block_leaves_nothing(ps3d, tmp_path, scans, killed_after):
    upright, _ = scans
    output = tmp_path / "labels.zarr"
    before = _listing(tmp_path)
    killed_after(0)
    code, _, err = _segment(ps3d, upright, output)
    assert code == 130, err
    assert _listing(tmp_path) == before


# ---------------------------------------------------------------------------------------- case 6: one writer


def test_a_second_run_on_the_same_output_is_refused_while_the_first_completes(ps3d, tmp_path, crops, scans, fresh,
                                                                              monkeypatch):
    upright, turned = scans
    image, _, spacing, size = crops
    output = tmp_path / "labels.zarr"
    holding, go_on = threading.Event(), threading.Event()
    finish = work_module.Work.finish

    def finish_after_the_second_run(self, index, count):
        holding.set()  # the first run holds the lock and has a block done
        assert go_on.wait(120)
        finish(self, index, count)

    monkeypatch.setattr(work_module.Work, "finish", finish_after_the_second_run)
    result = {}

    def first():
        try:
            result["labels"] = np.asarray(segment_chunked(
                image, spacing=spacing, particle_size_mm=size, method="otsu-watershed", chunk_size=CHUNK,
                output=output, progress=False))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            result["error"] = error

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert holding.wait(120)
        code, _, err = _segment(ps3d, turned, output, "--overwrite")
        assert_one_line_error(code, err, f"{output} is being written by pid {os.getpid()} on host "
                                         f"{socket.gethostname()} since")
    finally:
        go_on.set()
        thread.join(120)
    assert "error" not in result, result.get("error")
    np.testing.assert_array_equal(result["labels"], fresh[0])
    np.testing.assert_array_equal(load_labels(output), fresh[0])
    assert not lock_path(output).exists()


def test_a_stale_lock_is_taken_over_with_a_note(ps3d, tmp_path, scans, fresh):
    upright, _ = scans
    output = tmp_path / "labels.zarr"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    lock_path(output).write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(),
                                             "started": "yesterday", "token": "old"}))
    code, _, err = _segment(ps3d, upright, output)
    assert code == 0, err
    assert f"took over the lock {lock_path(output)} of pid {int(gone.stdout)}" in err
    np.testing.assert_array_equal(load_labels(output), fresh[0])
    assert not lock_path(output).exists()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path, crops):
    image, _, spacing, size = crops
    output = tmp_path / "labels.zarr"
    lock_path(output).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "today", "token": "x"}))
    with pytest.raises(OutputError, match="being written by pid 1 on host elsewhere since today.*delete"):
        segment_chunked(image, spacing=spacing, particle_size_mm=size, method="otsu-watershed", chunk_size=CHUNK,
                        output=output, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.zarr.ps3d-lock"]


# ---------------------------------------------------------------------------------------- case 5: Dask


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def not_a_scheduler():
    """``not_a_scheduler(kind)``: the address of an HTTP server, or of a service that sends garbage."""
    closers = []

    def serve(kind: str) -> str:
        if kind == "http":
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            closers.append(server.shutdown)
            closers.append(server.server_close)
            return f"tcp://127.0.0.1:{server.server_address[1]}"
        listener = socket.create_server(("127.0.0.1", 0))
        stop = threading.Event()

        def answer():
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    connection.sendall(b"\xff" * 64)  # a length of 3 EiB to Dask's handshake reader

        threading.Thread(target=answer, daemon=True).start()
        closers.append(listener.close)
        closers.append(stop.set)
        return f"tcp://127.0.0.1:{listener.getsockname()[1]}"

    yield serve
    for close in reversed(closers):
        close()


@pytest.mark.parametrize("kind, words", [("http", "nothing answered within 1 s"),
                                         ("garbage", "not a Dask scheduler")])
def test_an_address_that_is_not_a_dask_scheduler_is_refused_in_one_line(ps3d, tmp_path, scans, not_a_scheduler,
                                                                       kind, words):
    upright, _ = scans
    address = not_a_scheduler(kind)
    before = _listing(tmp_path)
    code, _, err = _segment(ps3d, upright, tmp_path / "labels.zarr", "--dask-scheduler", address,
                            "--dask-timeout", "1")
    assert_one_line_error(code, err, f"--dask-scheduler {address}", words, "--dask-scheduler local")
    assert _listing(tmp_path) == before


def test_the_api_names_the_keywords_of_a_scheduler_refusal(tmp_path, crops, not_a_scheduler):
    image, _, spacing, size = crops
    with pytest.raises(InputError, match=r"scheduler='tcp://.*raise dask_timeout.*scheduler='local'"):
        segment_chunked(image, spacing=spacing, particle_size_mm=size, method="otsu-watershed", chunk_size=CHUNK,
                        output=tmp_path / "labels.zarr", scheduler=not_a_scheduler("http"), dask_timeout=0.5,
                        progress=False)
    with pytest.raises(InputError, match="dask_timeout must be a positive number"):
        segment_chunked(image, spacing=spacing, method="otsu-watershed", scheduler="local", dask_timeout=0)
    assert list(tmp_path.iterdir()) == []


def test_nothing_listening_at_the_address_is_refused(ps3d, tmp_path, scans):
    upright, _ = scans
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: nothing listens there
    code, _, err = _segment(ps3d, upright, tmp_path / "labels.zarr", "--dask-scheduler", f"tcp://127.0.0.1:{port}")
    assert_one_line_error(code, err, "no Dask scheduler", "refused")
    assert not (tmp_path / "labels.zarr.ps3d-work").exists()


_SIGTERM_RUN = """
import sys, time
import numpy as np
from ps3d_toolkit.segmentation.chunked import segment_chunked
from ps3d_toolkit.segmentation.chunked import work

finish = work.Work.finish

def finish_then_wait(self, index, count):
    finish(self, index, count)
    print("one block done", flush=True)
    time.sleep(120)

work.Work.finish = finish_then_wait
image = np.load(sys.argv[1])
segment_chunked(image, spacing=0.01, particle_size_mm=float(sys.argv[3]), method="otsu-watershed", chunk_size=48,
                output=sys.argv[2], progress=False)
"""


def test_sigterm_releases_the_lock_and_keeps_the_finished_blocks(tmp_path, crops):
    import signal

    upright, _, _, size = crops
    np.save(tmp_path / "scan.npy", upright)
    output = tmp_path / "labels.zarr"
    run = subprocess.Popen([sys.executable, "-c", _SIGTERM_RUN, str(tmp_path / "scan.npy"), str(output), str(size)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().strip() == "one block done", run.stderr.read()
        assert lock_path(output).exists()
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 128 + signal.SIGTERM
    finally:
        run.kill()
        run.communicate()
    assert not lock_path(output).exists() and not output.exists()
    assert len(json.loads((tmp_path / "labels.zarr.ps3d-work" / "blocks.json").read_text())["blocks"]) == 1
