"""Remote sources (issue 10): https:// and s3:// read in place, retried, fingerprinted by HEAD.

Two servers on 127.0.0.1, started by the fixtures: a range-capable HTTP server that counts what it
serves and injects faults (HTTP 503, slow answers, dropped connections, truncated bodies), and
moto's S3 server holding a COG of the shipped sample scene.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

import geoseg
from geoseg.catalog import Catalog
from geoseg.cli.main import app
from geoseg.errors import CatalogError, RasterOpenError, RasterReadError
from geoseg.io.remote import remote_stat, retried
from geoseg.io.source import RasterSource
from geoseg.types import RemoteLocation, Window, is_remote
from geoseg.workflow.manifest import input_checksum
from geoseg.workflow.plan import plan_workflow
from tests.conftest import REPO, write_catalog

SAMPLE = REPO / "samples" / "nc_landsat7_2000.tif"
BANDS = "[{name: blue}, {name: green}, {name: red}, {name: nir}, {name: swir1}, {name: swir2}]"
OUTPUTS = ("classes.tif", "confidence.tif", "manifest.json", "report.html", "item.json")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Served:
    """One request the server answered: method, path, Range header, status, body bytes sent."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class Fault:
    """A fault for requests of ``methods``: skip ``after``, then hit ``times`` (None: all)."""

    kind: str  # an HTTP status ("503"), "drop", "slow" or "truncate"
    times: int | None = 1
    after: int = 0
    methods: tuple[str, ...] = ("HEAD", "GET")


@dataclass
class RangeServer:
    """A static HTTP server with Range, HEAD (size, ETag, Last-Modified) and fault injection.

    Files are served under a random folder, so no two servers share a URL (GDAL caches by URL).
    """

    files: dict[str, bytes] = field(default_factory=dict)
    folder: str = field(default_factory=lambda: secrets.token_hex(4))
    faults: list[Fault] = field(default_factory=list)
    log: list[Served] = field(default_factory=list)
    delay: float = 3.0
    token: str | None = None  # when set, requests must carry "Authorization: Bearer TOKEN"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ThreadingHTTPServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                server.answer(self)

            def do_GET(self) -> None:
                server.answer(self)

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that time out or were dropped on purpose

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.httpd

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{self.folder}/{name}"

    def put(self, name: str, data: bytes) -> None:
        self.files[f"/{self.folder}/{name}"] = data

    def data(self, name: str) -> bytes:
        return self.files[f"/{self.folder}/{name}"]

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults[:] = list(faults)

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.log.clear()

    @property
    def body_bytes(self) -> int:
        return sum(s.sent for s in self.log)

    def _fault(self, method: str) -> str | None:
        with self.lock:
            for fault in self.faults:
                if method not in fault.methods or fault.times == 0:
                    continue
                if fault.after:
                    fault.after -= 1
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault.kind
        return None

    def _record(self, h: BaseHTTPRequestHandler, status: int, sent: int) -> None:
        with self.lock:
            self.log.append(Served(h.command, h.path, h.headers.get("Range"), status, sent))

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        fault = self._fault(h.command)
        if fault == "drop":
            self._record(h, 0, 0)
            h.close_connection = True
            h.connection.close()
            return
        if fault and fault.isdigit():
            self._record(h, int(fault), 0)
            h.send_response(int(fault))
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if fault == "slow":
            time.sleep(self.delay)
        if self.token and h.headers.get("Authorization") != f"Bearer {self.token}":
            self._record(h, 401, 0)
            h.send_response(401)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = self.files.get(h.path)
        if data is None:
            self._record(h, 404, 0)
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        start, end, status = 0, len(data) - 1, 200
        found = _RANGE.match(h.headers.get("Range") or "")
        if found:
            first, last = found.groups()
            start = int(first) if first else len(data) - int(last)
            end = min(int(last), len(data) - 1) if first and last else len(data) - 1
            status = 206
        body = data[start : end + 1]
        sent = 0 if h.command == "HEAD" else len(body) // 2 if fault == "truncate" else len(body)
        self._record(h, status, sent)  # before answering: the client may look at once
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
        h.send_header("Last-Modified", email.utils.formatdate(1e9 + len(data), usegmt=True))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        h.end_headers()
        if h.command == "HEAD":
            return
        try:
            h.wfile.write(body[:sent])
            h.wfile.flush()
        except OSError:
            h.close_connection = True  # the client gave up (a timeout)
        if fault == "truncate":
            h.close_connection = True
            h.connection.close()


@pytest.fixture(scope="module")
def cog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample scene as a COG with 64 px blocks and overviews."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    path = tmp_path_factory.mktemp("cog") / "scene.tif"
    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=64, blockysize=64)
    cog_translate(SAMPLE, path, profile, overview_level=2, quiet=True)
    return path


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """GDAL's retries, fast: 3 per request from 10 ms, a 1 s timeout."""
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "3")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.01")
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")


@pytest.fixture
def http(cog: Path) -> Iterator[RangeServer]:
    server = RangeServer()
    server.put("scene.tif", cog.read_bytes())
    httpd = server.start()
    yield server
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server: str, cog: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://geoseg-test/scenes/scene.tif`` on the moto server, with GDAL pointed at it."""
    import boto3

    for name, value in {
        "AWS_S3_ENDPOINT": s3_server,
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_NO_SIGN_REQUEST", raising=False)
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}", region_name="us-east-1")
    client.create_bucket(Bucket="geoseg-test")
    client.put_object(Bucket="geoseg-test", Key="scenes/scene.tif", Body=cog.read_bytes())
    return "s3://geoseg-test/scenes/scene.tif"


def predict(tmp_path: Path, bundle: Path, file: str | Path, output: str) -> Any:
    """The tiny model over ``file`` (a path or URL) as catalog source 's', into ``output``."""
    folder = tmp_path / f"{output}.catalog"
    folder.mkdir(exist_ok=True)
    catalog = write_catalog(folder, f"  s:\n    file: {file}\n    bands: {BANDS}\n")
    return geoseg.predict(
        "s", bundle, tmp_path / output, catalog=catalog, chunk_size=128, vector={"enabled": False}
    )


def pixels(folder: Path) -> list[np.ndarray[Any, Any]]:
    """The class map's and the confidence's pixels."""
    found = []
    for name in ("classes.tif", "confidence.tif"):
        with rasterio.open(folder / name) as ds:
            found.append(ds.read())
    return found


def same_pixels(a: Path, b: Path) -> bool:
    """The class maps are equal, and the confidences (NaN = nodata)."""
    pairs = zip(pixels(a), pixels(b), strict=True)
    return all(np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in pairs)


def nothing_at_final_paths(folder: Path) -> bool:
    return not any((folder / name).exists() for name in OUTPUTS)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, cog: Path) -> Path:
    """The prediction over the local COG, which every remote one must equal."""
    tmp = tmp_path_factory.mktemp("local")
    predict(tmp, tiny_bundle, cog, "out")
    return tmp / "out"


def source_at(tmp_path: Path, url: str) -> RasterSource:
    return RasterSource.open(
        Catalog.load(
            write_catalog(tmp_path, f"  s:\n    file: {url}\n    bands: {BANDS}\n")
        ).source("s")
    )


def test_catalog_urls_stay_urls_and_paths_stay_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUCKET", "s3://bucket/prefix")
    body = (
        "  s:\n    bands:\n"
        "      - {name: a, file: 'https://example.com/a b/x.tif?sig=1'}\n"
        "      - {name: b, file: '${BUCKET}/y.tif'}\n"
        "      - {name: c, file: local.tif}\n"
        "    labels:\n      l: {file: 'https://example.com/labels.tif'}\n"
    )
    ref = Catalog.load(write_catalog(tmp_path, body)).source("s")
    assert ref.paths == (
        RemoteLocation("https://example.com/a b/x.tif?sig=1"),
        RemoteLocation("s3://bucket/prefix/y.tif"),
        tmp_path / "local.tif",
    )
    assert ref.label().path == RemoteLocation("https://example.com/labels.tif")
    assert [is_remote(p) for p in ref.paths] == [True, True, False]
    assert is_remote("S3://b/k") and is_remote("https://h/x.tif")
    assert not is_remote(Path("https://h/x.tif")) and not is_remote("/data/x.tif")
    vector = body + "      v: {file: 'https://example.com/l.gpkg', attribute: cls}\n"
    with pytest.raises(
        CatalogError, match=r"labels 'v': vector label layers must be local files, not https://"
    ):
        Catalog.load(write_catalog(tmp_path, vector)).source("s")
    bucket_only = "  s:\n    file: s3://bucket\n    bands: [{name: a}]\n"
    with pytest.raises(CatalogError, match="names a bucket but no object: use s3://BUCKET/KEY"):
        Catalog.load(write_catalog(tmp_path, bucket_only)).source("s")


def test_predict_over_https_equals_the_local_file_and_a_rerun_only_heads(
    tmp_path: Path, tiny_bundle: Path, http: RangeServer, local: Path
) -> None:
    url = http.url("scene.tif")
    report = predict(tmp_path, tiny_bundle, url, "out")
    assert not report.up_to_date and same_pixels(tmp_path / "out", local)
    assert all(s.method == "HEAD" or s.range for s in http.log), "only range requests"
    record = report_manifest(tmp_path / "out")["fingerprint"]["inputs"]
    assert record == [
        {
            "path": url,
            "bytes": len(http.data("scene.tif")),
            "sha256": None,
            "quick": None,
            "etag": f'"{hashlib.md5(http.data("scene.tif")).hexdigest()}"',
            "modified": email.utils.formatdate(1e9 + len(http.data("scene.tif")), usegmt=True),
        }
    ]
    http.clear()
    again = predict(tmp_path, tiny_bundle, url, "out")
    assert again.up_to_date
    assert [(s.method, s.sent) for s in http.log] == [("HEAD", 0)], "one HEAD, no body"


def report_manifest(folder: Path) -> Any:
    import json

    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def test_predict_over_s3_equals_the_local_file(
    tmp_path: Path, tiny_bundle: Path, s3: str, local: Path, cog: Path
) -> None:
    report = predict(tmp_path, tiny_bundle, s3, "out")
    assert not report.up_to_date and same_pixels(tmp_path / "out", local)
    (record,) = report_manifest(tmp_path / "out")["fingerprint"]["inputs"]
    assert record["path"] == s3 and record["bytes"] == cog.stat().st_size
    assert record["etag"] == f'"{hashlib.md5(cog.read_bytes()).hexdigest()}"'
    assert predict(tmp_path, tiny_bundle, s3, "out").up_to_date


def test_transient_faults_during_a_predict_are_retried_and_change_nothing(
    tmp_path: Path, tiny_bundle: Path, http: RangeServer, local: Path
) -> None:
    http.inject(
        Fault("503", times=2),
        Fault("drop", after=2, methods=("GET",)),
        Fault("truncate", after=4, methods=("GET",)),
        Fault("503", times=2, after=8, methods=("GET",)),
    )
    predict(tmp_path, tiny_bundle, http.url("scene.tif"), "out")
    assert same_pixels(tmp_path / "out", local)
    statuses = [s.status for s in http.log]
    assert statuses.count(503) == 4 and statuses.count(0) == 1, statuses
    assert all(f.times == 0 for f in http.faults), "every fault was hit"


@pytest.mark.parametrize("fault", ["503", "drop", "truncate", "slow"])
def test_each_transient_fault_is_retried(
    tmp_path: Path, http: RangeServer, cog: Path, fault: str
) -> None:
    remote = source_at(tmp_path, http.url("scene.tif"))
    http.delay = 2.0  # past GDAL_HTTP_TIMEOUT
    http.inject(Fault(fault, methods=("GET",)))
    window = remote.grid.window
    data = remote.read(window)
    assert http.faults[0].times == 0, "the fault was hit"
    assert np.array_equal(data, source_at(tmp_path, str(cog)).read(window), equal_nan=True)


def test_a_small_window_reads_a_small_part_of_the_file(tmp_path: Path, http: RangeServer) -> None:
    source = source_at(tmp_path, http.url("scene.tif"))
    source.read(Window(100, 100, 64, 64))
    size = len(http.data("scene.tif"))
    assert http.body_bytes < size / 5, (http.body_bytes, size)
    assert all(s.range for s in http.log if s.method == "GET"), "range requests only"


def test_a_remote_fingerprint_is_one_head_and_follows_the_object(http: RangeServer) -> None:
    location = RemoteLocation(http.url("scene.tif"))
    first = input_checksum(location)
    assert [(s.method, s.sent) for s in http.log] == [("HEAD", 0)]
    assert first.bytes == len(http.data("scene.tif")) and first.etag and first.modified
    assert first.sha256 is None and first.quick is None
    http.put("scene.tif", http.data("scene.tif")[:-1] + b"x")
    assert input_checksum(location).etag != first.etag


def test_a_server_refusing_head_is_asked_for_one_byte(http: RangeServer) -> None:
    http.inject(Fault("405", times=None, methods=("HEAD",)))
    record = input_checksum(RemoteLocation(http.url("scene.tif")))
    assert record.bytes == len(http.data("scene.tif")) and record.etag and record.modified
    assert [(s.method, s.range, s.sent) for s in http.log] == [
        ("HEAD", None, 0),
        ("GET", "bytes=0-0", 1),
    ]


def test_a_permanent_failure_is_one_clear_error_and_nothing_is_written(
    tmp_path: Path, tiny_bundle: Path, http: RangeServer
) -> None:
    missing = http.url("missing.tif")
    with pytest.raises(
        RasterOpenError,
        match=rf"^cannot open {re.escape(missing)}: not found \(HTTP 404\); check the URL$",
    ):
        predict(tmp_path, tiny_bundle, missing, "missing")
    assert nothing_at_final_paths(tmp_path / "missing")

    url = http.url("scene.tif")
    http.inject(Fault("503", times=None))
    with pytest.raises(
        RasterOpenError,
        match=rf"^cannot open {re.escape(url)}: the server kept failing \(HTTP 503\); gave up "
        r"after 3 retries per request .* raise GDAL_HTTP_MAX_RETRY",
    ):
        predict(tmp_path, tiny_bundle, url, "busy")
    assert nothing_at_final_paths(tmp_path / "busy")

    http.inject(Fault("503", times=None, methods=("GET",)))  # HEAD works, reads do not
    with pytest.raises((RasterOpenError, RasterReadError), match=rf"{re.escape(url)}.*HTTP 503"):
        predict(tmp_path, tiny_bundle, url, "broken")
    assert nothing_at_final_paths(tmp_path / "broken")


def test_a_read_that_keeps_failing_names_the_url_and_the_status(
    tmp_path: Path, http: RangeServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = http.url("scene.tif")
    source = source_at(tmp_path, url)
    http.inject(Fault("503", times=None, methods=("GET",)))
    with pytest.raises(
        (RasterOpenError, RasterReadError),
        match=rf"^(cannot open|reading) {re.escape(url)}.*the server kept failing \(HTTP 503\)",
    ):
        source.read(Window(0, 0, 64, 64))
    assert f"reading {url} band(s) [1, 2, 3, 4, 5, 6], window rows 0:64, cols 0:64 failed" in (
        caplog.text
    ), "each failed attempt is logged, with the window"
    http.inject()
    assert source.read(Window(0, 0, 64, 64)).shape == (6, 64, 64), "GDAL's cache was refreshed"


def test_the_cli_reports_a_missing_url_without_a_traceback(
    tmp_path: Path, tiny_bundle: Path, http: RangeServer
) -> None:
    missing = http.url("missing.tif")
    catalog = write_catalog(tmp_path, f"  s:\n    file: {missing}\n    bands: {BANDS}\n")
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        f"version: 1\ncatalog: {catalog}\nsteps:\n  - predict:\n      source: s\n"
        f"      model: {tiny_bundle}\n      output: out\n      vector: {{enabled: false}}\n",
        encoding="utf-8",
    )
    plan = plan_workflow(workflow)
    assert not any(is_remote(p) for p in plan.protected), "remote inputs are not protected"
    result = CliRunner().invoke(app, ["run", str(workflow)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"cannot open {missing}: not found (HTTP 404)" in " ".join(result.output.split())
    assert nothing_at_final_paths(tmp_path / "out")


def test_retries_stop_at_once_on_a_permanent_status(http: RangeServer) -> None:
    calls = []

    def fail() -> None:
        calls.append(1)
        remote_stat(RemoteLocation(http.url("missing.tif")))

    with pytest.raises(RasterOpenError, match="HTTP 404"):
        retried(RemoteLocation(http.url("missing.tif")), fail)
    assert len(calls) == 1 and [s.status for s in http.log] == [404]


def test_a_server_asking_for_a_token_is_read_and_fingerprinted_with_gdals_setting(
    tmp_path: Path, http: RangeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = http.url("scene.tif")
    http.token = "t0ken"
    try:
        with pytest.raises(RasterOpenError, match=r"access denied \(HTTP 401\).*GDAL_HTTP_HEADERS"):
            remote_stat(RemoteLocation(url))
        monkeypatch.setenv("GDAL_HTTP_HEADERS", "Authorization: Bearer t0ken")
        assert remote_stat(RemoteLocation(url)).size == len(http.data("scene.tif"))
        assert source_at(tmp_path, url).read(Window(0, 0, 16, 16)).shape[1:] == (16, 16)
    finally:
        http.token = None
