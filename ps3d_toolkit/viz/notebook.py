"""Plotly figures in a notebook that a saved copy still shows where no JavaScript runs (GitHub)."""

from __future__ import annotations

import atexit
import logging
import warnings

logger = logging.getLogger(__name__)

#: The renderer with a static fallback: plotly's own mimetype (drawn by JupyterLab and VS Code,
#: without plotly.js in the notebook) and a JPEG for viewers without JavaScript. Not a PNG:
#: JupyterLab's plotly renderer shows a PNG from the bundle instead of the figure until the
#: pointer enters it, while it leaves a JPEG alone and draws the interactive figure at once.
STATIC_FALLBACK_RENDERER = "plotly_mimetype+jpeg"

#: kaleido warns at every image that plotly's (empty) browser options are ignored by its
#: long-lived browser: a note about plotly's call, not about the figure.
_KOPTS_WARNING = "The kopts argument is ignored if using a server"


def static_figure_fallbacks() -> bool:
    """Show each plotly figure with a JPEG of itself beside it, when kaleido can draw one.

    A figure shown in a notebook is then saved twice: interactive (plotly's mimetype, which
    JupyterLab and VS Code draw) and as a JPEG, which GitHub and other viewers without JavaScript
    show instead of nothing. kaleido (the ``notebooks`` extra) draws the image in the system's
    Chrome or Chromium (``apt-get install chromium``), kept running for the kernel's lifetime.
    Without kaleido or a browser the figures stay interactive only; the log says why.

    Returns
    -------
    bool
        Whether figures now carry a JPEG.
    """
    import plotly.io as pio

    try:
        import kaleido
    except ImportError:
        logger.info("figures are interactive only: kaleido (the 'notebooks' extra) is not installed")
        return False
    try:
        # in this thread first: the long-lived browser's thread would not report a missing one
        pio.to_image({"data": [], "layout": {}}, format="jpeg", width=8, height=8)
    except Exception as error:  # kaleido's ChromeNotFoundError and a browser that fails to start alike
        logger.info("figures are interactive only: kaleido cannot draw an image (%s)",
                    next(iter(str(error).strip().splitlines()), type(error).__name__))
        return False
    warnings.filterwarnings("ignore", message=_KOPTS_WARNING, category=UserWarning)
    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)   # its browser and temporary folder
    pio.renderers.default = STATIC_FALLBACK_RENDERER
    return True
