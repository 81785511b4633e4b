"""The report's figures and plotly.js as one compressed block, drawn by a small loader in the browser.

plotly.js is 4.8 MB of the report's ~5 MB; deflated it is 1.5 MB. The
compressed bytes go into the page in a base-85 text (25 % larger, against
base64's 33 %) whose alphabet leaves out every character that means something
in HTML or a JavaScript string (``"&'<>\\`-/``), so the text is safe inside a
``<script type="application/octet-stream">`` block. The loader decodes it,
inflates it with the browser's own ``DecompressionStream`` (Chromium 80,
Firefox 113, Safari 16.4), runs plotly.js and draws every figure into its
``div.ps3d-figure``; then it sets ``document.body.dataset.figures = "ready"``,
which the PDF export waits for. Nothing is fetched from the network.
"""

from __future__ import annotations

import json
import zlib

import numpy as np

#: 85 printable ASCII characters without ``" & ' < > \\ ` - /``.
ALPHABET = "".join(chr(c) for c in range(33, 127) if chr(c) not in "\"&'<>\\`-/")

_LOADER = """
(async () => {
  const alphabet = ALPHABET_JSON;
  const lookup = new Uint8Array(128);
  for (let i = 0; i < alphabet.length; i++) lookup[alphabet.charCodeAt(i)] = i;
  async function inflate(id) {
    const node = document.getElementById(id);
    const text = node.textContent.trim();
    const bytes = new Uint8Array(text.length / 5 * 4);
    const view = new DataView(bytes.buffer);
    for (let i = 0, j = 0; i < text.length; i += 5, j += 4) {
      let value = 0;
      for (let k = 0; k < 5; k++) value = value * 85 + lookup[text.charCodeAt(i + k)];
      view.setUint32(j, value);
    }
    const packed = new Blob([bytes.subarray(0, Number(node.dataset.length))]);
    return new Response(packed.stream().pipeThrough(new DecompressionStream("deflate"))).text();
  }
  const [library, figures] = await Promise.all([inflate("ps3d-plotlyjs"), inflate("ps3d-figures")]);
  window.PlotlyConfig = {MathJaxConfig: "local"};
  const script = document.createElement("script");
  script.textContent = library;
  document.head.appendChild(script);
  const specs = JSON.parse(figures);
  const config = {displaylogo: false, responsive: true};
  await Promise.all(Array.from(document.querySelectorAll("div.ps3d-figure")).map(
    div => Plotly.newPlot(div, specs[Number(div.dataset.figure)].data, specs[Number(div.dataset.figure)].layout,
                          config)));
  document.body.dataset.figures = "ready";
})().catch(error => {
  document.body.dataset.figures = "failed";
  for (const div of document.querySelectorAll("div.ps3d-figure")) {
    div.textContent = "This figure needs a browser with DecompressionStream (Chrome 80, Firefox 113, Safari 16.4): "
      + error;
  }
});
"""


def encode(data: bytes) -> tuple[str, int]:
    """Deflate ``data`` (zlib, level 9) and write it in base 85 with :data:`ALPHABET`.

    Returns the text and the number of compressed bytes (the last group of 5
    characters is padded); :func:`decode` reverses it.
    """
    packed = zlib.compress(data, 9)
    padded = np.frombuffer(packed + b"\0" * (-len(packed) % 4), dtype=">u4").astype(np.uint64)
    digits = np.empty((len(padded), 5), dtype=np.uint8)
    for k in range(4, -1, -1):
        padded, digits[:, k] = np.divmod(padded, np.uint64(85))
    table = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
    return table[digits].tobytes().decode("ascii"), len(packed)


def decode(text: str, length: int) -> bytes:
    """The bytes :func:`encode` packed into ``text`` (``length`` compressed bytes), as the loader reads them."""
    lookup = np.zeros(128, dtype=np.uint64)
    lookup[np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(85, dtype=np.uint64)
    digits = lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)].reshape(-1, 5)
    values = np.zeros(len(digits), dtype=np.uint64)
    for k in range(5):
        values = values * np.uint64(85) + digits[:, k]
    return zlib.decompress(values.astype(">u4").tobytes()[:length])


def figures_block(figures) -> str:
    """plotly.js and the figures (in the order of their ``data-figure`` index) as the page's closing scripts."""
    from plotly.offline import get_plotlyjs

    specs = "[" + ",".join(figure.to_json(validate=False) for figure in figures) + "]"
    parts = []
    for name, data in (("ps3d-plotlyjs", get_plotlyjs()), ("ps3d-figures", specs)):
        text, length = encode(data.encode("utf-8"))
        parts.append(f'<script type="application/octet-stream" id="{name}" data-length="{length}">{text}</script>')
    loader = _LOADER.replace("ALPHABET_JSON", json.dumps(ALPHABET))
    return "\n".join(parts) + f"\n<script>{loader}</script>"
