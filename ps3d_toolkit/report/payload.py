"""The report's figures: plotly.js inline once, uncompressed, and a script that draws every figure as the page loads.

plotly.js goes into the page as plotly's own ``to_html`` puts it there, in a
plain ``<script>``; the figures follow as one JSON block, and a short script
draws each into its ``div.ps3d-figure``. All of it runs while the page is
parsed, before its ``load`` event, so a screenshot taken at load, a print and
the PDF show every figure without waiting for anything. (Earlier versions
deflated both, which were then inflated and inflated by the browser's asynchronous ``DecompressionStream``:
a page of 1.9 MB instead of 5.0 MB for the bundled sample, but a plain headless
screenshot showed none of its figures.)

When every figure is drawn the script sets ``document.body.dataset.figures``
to ``"ready"`` (``"failed"`` on an error), which the PDF export checks. Nothing
is fetched from the network.
"""

from __future__ import annotations

_DRAW = """
(() => {
  const config = {displaylogo: false, responsive: true};
  try {
    const specs = JSON.parse(document.getElementById("ps3d-figures").textContent);
    const drawn = Array.from(document.querySelectorAll("div.ps3d-figure")).map(div => {
      const spec = specs[Number(div.dataset.figure)];
      return Plotly.newPlot(div, spec.data, spec.layout, config);
    });
    Promise.all(drawn).then(() => { document.body.dataset.figures = "ready"; },
                            () => { document.body.dataset.figures = "failed"; });
  } catch (error) {
    document.body.dataset.figures = "failed";
    throw error;
  }
})();
"""


def figures_block(figures) -> str:
    """plotly.js, the figures (in the order of their ``data-figure`` index) and the script that draws them."""
    from plotly.offline import get_plotlyjs

    specs = "[" + ",".join(figure.to_json(validate=False) for figure in figures) + "]"
    # "<" occurs only inside JSON strings; escaped, no "</script>" or "<!--" can end the block early
    specs = specs.replace("<", "\\u003c")
    return ('<script>window.PlotlyConfig = {MathJaxConfig: "local"};</script>\n'
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
            f'<script type="application/json" id="ps3d-figures">{specs}</script>\n'
            f"<script>{_DRAW}</script>")
