"""The local web-map server: the page, the run's description, tiles and polygons.

Routes: ``/`` the page (Leaflet, served from this package: it works offline),
``/static/...`` Leaflet's files, ``/layers.json`` what the run offers (:class:`RunLayers`),
``/tiles/LAYER/Z/X/Y.png`` tiles rendered by rio-tiler (:mod:`geoseg.view.tiles`), and
``/polygons.geojson`` the run's polygons in EPSG:4326. It binds to localhost by default.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from geoseg.errors import ConfigError
from geoseg.view.layers import RunLayers
from geoseg.view.tiles import render

log = logging.getLogger(__name__)

TILE = re.compile(r"^/tiles/(imagery|classes|confidence|errors)/(\d+)/(\d+)/(\d+)\.png$")
STATIC = resources.files("geoseg.view") / "static"
TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".html": "text/html"}


class ViewServer(ThreadingHTTPServer):
    """An HTTP server for one run folder; ``url`` is where the map is."""

    daemon_threads = True

    def __init__(self, layers: RunLayers, host: str = "127.0.0.1", port: int = 0) -> None:
        self.layers = layers
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The page's address."""
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/"

    def handle_error(self, request: object, client_address: object) -> None:
        """A browser that drops a tile it no longer needs (zooming) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def start(self) -> threading.Thread:
        """Serve in a background thread (stop with :meth:`shutdown`)."""
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread


def open_view(folder: Path, host: str = "127.0.0.1", port: int = 0) -> ViewServer:
    """A server for the run in ``folder`` (not yet serving: call ``start`` or ``serve_forever``)."""
    layers = RunLayers.discover(folder)
    try:
        return ViewServer(layers, host, port)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve the web map on {host}:{port}: {exc.strerror or exc}; choose another "
            "port with --port (--port 0 takes any free one)"
        ) from exc


@functools.cache
def _empty_tile() -> bytes:
    """A transparent 256 px PNG: where a layer has no pixels (a failed image would log errors)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (256, 256)).save(out, format="PNG")
    return out.getvalue()


@functools.lru_cache(maxsize=8)
def _polygons(path: Path, stamp: float) -> bytes:
    """The polygons of a GeoPackage as GeoJSON in EPSG:4326 (cached per file version)."""
    import pyogrio

    frame = pyogrio.read_dataframe(path)
    if frame.crs is not None:
        frame = frame.to_crs("EPSG:4326")
    return frame.to_json(drop_id=True).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("view: " + format, *args)

    def do_GET(self) -> None:
        layers = self.server.layers
        path = self.path.split("?", 1)[0]
        port = self.server.server_address[1]
        if self.headers.get("Host") not in (f"127.0.0.1:{port}", f"localhost:{port}", None):
            self.send_error(HTTPStatus.FORBIDDEN, "geoseg view answers only to localhost")
            return  # another site's page reaching this server through DNS rebinding
        if path in ("/", "/index.html"):
            self._send((STATIC / "index.html").read_bytes(), "text/html; charset=utf-8")
        elif path == "/layers.json":
            self._send(json.dumps(layers.describe()).encode("utf-8"), "application/json")
        elif path == "/polygons.geojson" and layers.polygons is not None:
            try:
                body = _polygons(layers.polygons, layers.polygons.stat().st_mtime)
            except (OSError, ValueError) as exc:
                log.warning("cannot read %s: %s", layers.polygons, exc)
                self.send_error(HTTPStatus.NOT_FOUND, f"the polygons cannot be read: {exc}")
                return
            self._send(body, "application/geo+json")
        elif match := TILE.match(path):
            name, z, x, y = match.group(1), *map(int, match.groups()[1:])
            self._send(render(layers, name, z, x, y) or _empty_tile(), "image/png")
        elif path.startswith("/static/") and ".." not in path:
            item = STATIC.joinpath(*path.removeprefix("/static/").split("/"))
            if item.is_file():
                self._send(
                    item.read_bytes(), TYPES.get(Path(path).suffix, "application/octet-stream")
                )
            else:
                self.send_error(HTTPStatus.NOT_FOUND)
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
