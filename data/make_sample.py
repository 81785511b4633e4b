"""Write the bundled sample: ``python data/make_sample.py``.

Generates the synthetic phantom recorded in ``ps3d_toolkit.data.SAMPLE_PARAMS``
and writes ``data/sample/scan.tif`` (uint16, zlib), ``data/sample/labels.tif``
(uint32, zlib) and ``data/sample/metadata.json``. The same function regenerates
the sample in memory when the package is installed without this folder, so the
files and the fallback cannot drift apart (tests/test_data.py checks it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.data import make_sample
from ps3d_toolkit.io import save_labels, save_scan


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "sample",
                        help="folder to write (default: data/sample beside this script)")
    args = parser.parse_args(argv)

    image, labels, metadata = make_sample()
    args.output.mkdir(parents=True, exist_ok=True)
    save_scan(image, args.output / "scan.tif", spacing=metadata["spacing"],
              particle_size_mm=metadata["particle_size_mm"])
    save_labels(labels, args.output / "labels.tif", spacing=metadata["spacing"])
    with atomic_path(args.output / "metadata.json") as tmp:
        tmp.write_text(json.dumps(metadata, indent=2) + "\n")
    total = sum(f.stat().st_size for f in args.output.iterdir() if f.is_file())
    print(f"wrote {args.output} ({metadata['n_particles']} particles, {total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
