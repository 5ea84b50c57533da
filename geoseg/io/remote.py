"""Remote rasters: ``https://`` URLs and ``s3://bucket/key`` objects, read in place.

A :class:`~geoseg.types.RemoteLocation` is opened through GDAL's virtual file systems
(``/vsicurl/``, ``/vsis3/``): GDAL reads the header and then only the blocks a window needs, with
HTTP range requests and its block cache; nothing downloads a whole file. Every open runs inside a
``rasterio.Env`` with :data:`GDAL_DEFAULTS` (retries with exponential backoff on HTTP 429/5xx,
timeouts and dropped connections; no directory listing or side-car probing). A variable the user
sets in the environment wins over these defaults.

On top of GDAL's per-request retries, :func:`retried` repeats a whole open-and-read a few times
(a truncated body leaves GDAL's TIFF reader failed for that handle). A failed read marks the URL
stale, so the next open bypasses and refreshes GDAL's cache of it (``CPL_VSIL_CURL_NON_CACHED``):
GDAL otherwise remembers a failure. Permanent failures (HTTP 404, 403, retries exhausted) are
explained by :func:`explain`: the URL, the HTTP status and the fix.

:func:`remote_stat` is the cheap metadata of an object (size, ETag, Last-Modified) from one HTTP
HEAD, for input fingerprints; for ``s3://`` the HEAD goes to the endpoint GDAL uses
(``AWS_S3_ENDPOINT``, ``AWS_HTTPS``, ``AWS_VIRTUAL_HOSTING``), signed by botocore
with the AWS credential chain, or unsigned with ``AWS_NO_SIGN_REQUEST=YES``.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import rasterio
import rasterio.env
from rasterio.errors import RasterioError, RasterioIOError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from geoseg.errors import RasterOpenError, RasterReadError, root_cause
from geoseg.types import Location, RemoteLocation, is_remote

__all__ = [
    "GDAL_DEFAULTS",
    "RemoteStat",
    "explain",
    "open_remote",
    "remote_stat",
    "retried",
    "vsi_path",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: GDAL options for remote reads, unless set in the environment: retries with exponential
#: backoff from 1 s (5 retries on HTTP 429/5xx, timeouts and dropped connections), 60 s per
#: request, a per-file cache, and no directory listing (which would probe for side-car files).
GDAL_DEFAULTS: Mapping[str, str] = {
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "VSI_CACHE": "TRUE",
}

#: Whole open-and-read attempts by :func:`retried` (each one retried by GDAL per request).
READ_ATTEMPTS = 3

#: HTTP statuses worth retrying; any other 4xx is permanent.
TRANSIENT_STATUS = frozenset({408, 429})

_GDAL_STATUS = re.compile(r"HTTP (?:response |error )?code[^0-9]{0,40}(\d{3})", re.IGNORECASE)
_FALSE = {"NO", "FALSE", "OFF", "0"}

_stale: set[RemoteLocation] = set()
_stale_lock = threading.Lock()


def vsi_path(location: RemoteLocation) -> str:
    """The GDAL path of ``location``: ``/vsis3/bucket/key`` or ``/vsicurl/URL``."""
    if location.scheme == "s3":
        return "/vsis3/" + location.url.split("://", 1)[1]
    return "/vsicurl/" + location.url


def option(name: str) -> str:
    """The value GDAL uses for ``name``: the environment's, else geoseg's default."""
    return os.environ.get(name) or GDAL_DEFAULTS[name]


def gdal_options(location: RemoteLocation) -> dict[str, str]:
    """The ``rasterio.Env`` options for opening ``location`` (environment and outer Env win).

    Only ``location``'s own extension is allowed (GDAL requests nothing else), and a location
    whose last read failed bypasses GDAL's cache of it once.
    """
    given = {*os.environ, *(rasterio.env.getenv() if rasterio.env.hasenv() else {})}
    options = {k: v for k, v in GDAL_DEFAULTS.items() if k not in given}
    suffix = PurePosixPath(urlsplit(location.url).path).suffix
    if suffix and "CPL_VSIL_CURL_ALLOWED_EXTENSIONS" not in given:
        options["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = suffix
    with _stale_lock:
        if location in _stale:
            _stale.discard(location)
            options["CPL_VSIL_CURL_NON_CACHED"] = vsi_path(location)
    return options


def _mark_stale(location: RemoteLocation) -> None:
    with _stale_lock:
        _stale.add(location)


@contextmanager
def open_remote(location: RemoteLocation) -> Iterator[rasterio.DatasetReader]:
    """Open ``location`` through GDAL; the dataset is read inside the same ``rasterio.Env``.

    A failure marks the location stale (see the module docstring); an open that fails raises
    :class:`RasterOpenError` naming the URL, the HTTP status and the fix.
    """
    with rasterio.Env(**gdal_options(location)):
        try:
            dataset = rasterio.open(vsi_path(location))
        except RasterioIOError as exc:
            _mark_stale(location)
            raise RasterOpenError(f"cannot open {location}: {explain(location, exc)}") from exc
        try:
            with dataset:
                yield dataset
        except (RasterioError, RasterReadError):
            _mark_stale(location)
            raise


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an error carries (urllib's, or in GDAL's message), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, urllib.error.HTTPError):
            return seen.code
        found = _GDAL_STATUS.search(str(seen))
        if found:
            return int(found.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a failed remote request may succeed when repeated.

    Timeouts, dropped connections, truncated bodies and HTTP 408/429/5xx are transient; other
    HTTP 4xx statuses (not found, access denied) are not.
    """
    status = http_status(exc)
    if status is not None:
        return status >= 500 or status in TRANSIENT_STATUS
    cause = exc.__cause__ if isinstance(exc, RasterOpenError | RasterReadError) else exc
    return isinstance(cause, RasterioError | OSError | http.client.HTTPException)


def _retrying(location: RemoteLocation, attempts: int, what: str) -> Retrying:
    """Tenacity's loop for ``location``: exponential backoff from ``GDAL_HTTP_RETRY_DELAY``."""

    def warn(state: RetryCallState) -> None:
        outcome = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s %s failed (%s); retrying in %.1f s", what, location, outcome, wait)

    delay = float(option("GDAL_HTTP_RETRY_DELAY"))
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=delay, min=delay, max=60),
        retry=retry_if_exception(is_transient),
        before_sleep=warn,
        reraise=True,
    )


def retried(location: Location, action: Callable[[], T]) -> T:
    """``action()``, repeated with backoff while it fails transiently when ``location`` is remote.

    ``action`` opens ``location`` and reads it; the last error is raised unchanged.
    """
    if not is_remote(location):
        return action()
    return _retrying(location, READ_ATTEMPTS, "reading")(action)


@dataclass(frozen=True, slots=True)
class RemoteStat:
    """Cheap metadata of a remote object, from one HTTP HEAD."""

    size: int | None
    etag: str | None
    modified: str | None


def remote_stat(location: RemoteLocation) -> RemoteStat:
    """Size, ETag and Last-Modified of ``location`` from an HTTP HEAD (retried like GDAL's).

    A server that refuses HEAD (HTTP 403 or 405, as for URLs signed for GET only) is asked for
    the first byte instead. Raises :class:`RasterOpenError` naming the URL, the HTTP status and
    the fix.
    """
    attempts = int(option("GDAL_HTTP_MAX_RETRY")) + 1
    try:
        return _retrying(location, attempts, "HEAD of")(_stat, location)
    except (OSError, http.client.HTTPException) as exc:
        raise RasterOpenError(f"cannot open {location}: {explain(location, exc)}") from exc


def _stat(location: RemoteLocation) -> RemoteStat:
    """One attempt of :func:`remote_stat`."""
    if location.scheme == "s3":
        return _s3_stat(location)
    try:
        headers = _request(location, "HEAD")
        size = headers.get("Content-Length", "")
    except urllib.error.HTTPError as exc:
        if exc.code not in (403, 405):
            raise
        headers = _request(location, "GET", {"Range": "bytes=0-0"})
        ranged = headers.get("Content-Range")  # bytes 0-0/SIZE
        size = ranged.rpartition("/")[2] if ranged else headers.get("Content-Length", "")
    return RemoteStat(
        int(size) if size.isdigit() else None, headers.get("ETag"), headers.get("Last-Modified")
    )


def explain(location: RemoteLocation, exc: BaseException) -> str:
    """What went wrong reading ``location`` and how to fix it, with the HTTP status.

    ``exc`` is GDAL's (rasterio's) or urllib's error. Where GDAL's does not say the HTTP status,
    one request for the first byte (not retried) asks the server.
    """
    status = http_status(exc)
    if status is None and isinstance(exc, RasterioError):
        try:
            if location.scheme == "s3":
                _s3_stat(location)
            else:
                _request(location, "GET", {"Range": "bytes=0-0"})
        except (OSError, http.client.HTTPException) as probe:
            status = http_status(probe)
            exc = exc if status is not None else probe
        else:
            return (
                f"reading failed ({root_cause(exc)}) although the server answers: the object may "
                f"be truncated or not a raster, or the connection kept dropping; {_retry_fix()}"
            )
    if status is None:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return f"no usable answer from the server ({reason}); {_retry_fix()}"
    if status == 404:
        where = "the bucket and the key" if location.scheme == "s3" else "the URL"
        return f"not found (HTTP 404); check {where}"
    if status in (401, 403):
        fix = (
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or "
            "AWS_NO_SIGN_REQUEST=YES for a public bucket"
            if location.scheme == "s3"
            else "check the access rights (GDAL_HTTP_HEADERS, GDAL_HTTP_USERPWD)"
        )
        return f"access denied (HTTP {status}); {fix}"
    if status >= 500 or status in TRANSIENT_STATUS:
        return f"the server kept failing (HTTP {status}); {_retry_fix()}"
    return f"HTTP {status} ({root_cause(exc)}); check the URL"


def _retry_fix() -> str:
    retries, delay = option("GDAL_HTTP_MAX_RETRY"), option("GDAL_HTTP_RETRY_DELAY")
    return (
        f"gave up after {retries} retries per request ({delay} s apart, doubling). Try again "
        "later, or raise GDAL_HTTP_MAX_RETRY, GDAL_HTTP_RETRY_DELAY or GDAL_HTTP_TIMEOUT"
    )


class _KeepMethod(urllib.request.HTTPRedirectHandler):
    """Follows redirects keeping the method: urllib would turn a redirected HEAD into a GET."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        found = super().redirect_request(req, fp, code, msg, headers, newurl)
        if found is not None:
            found.method = req.get_method()
        return found


def _request(
    location: RemoteLocation, method: str, extra: Mapping[str, str] | None = None
) -> http.client.HTTPMessage:
    """The response headers of a ``method`` request of an https:// ``location`` (no body read).

    Sent as GDAL would send it: with GDAL's HTTP headers, credentials, proxy and certificate
    settings (:func:`gdal_http_headers`, :func:`_opener`). Raises urllib's errors as they come.
    """
    headers = {**gdal_http_headers(), **(extra or {})}
    request = urllib.request.Request(location.url, method=method, headers=headers)
    with _opener().open(request, timeout=float(option("GDAL_HTTP_TIMEOUT"))) as response:
        found: http.client.HTTPMessage = response.headers
        return found


def gdal_http_headers() -> dict[str, str]:
    """The request headers GDAL's settings add to its requests.

    ``GDAL_HTTP_HEADERS`` (lines, or a comma list, of ``Name: value``), the lines of
    ``GDAL_HTTP_HEADER_FILE``, and ``GDAL_HTTP_BEARER`` or ``GDAL_HTTP_USERPWD`` (basic) as
    ``Authorization``.
    """
    lines = re.split(r"\r?\n", os.environ.get("GDAL_HTTP_HEADERS", ""))
    if len(lines) == 1 and all(":" in part for part in lines[0].split(",")):
        lines = lines[0].split(",")
    header_file = os.environ.get("GDAL_HTTP_HEADER_FILE")
    if header_file:
        lines += Path(header_file).read_text(encoding="utf-8").splitlines()
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    userpwd, bearer = os.environ.get("GDAL_HTTP_USERPWD"), os.environ.get("GDAL_HTTP_BEARER")
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    elif userpwd:
        headers["Authorization"] = "Basic " + base64.b64encode(userpwd.encode()).decode()
    return headers


def _opener() -> urllib.request.OpenerDirector:
    """Urllib set up as GDAL is: its proxy and certificates; redirects keep the method.

    ``GDAL_HTTP_PROXY``; ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE``, or no check with
    ``GDAL_HTTP_UNSAFESSL=YES``.
    """
    context = ssl.create_default_context(
        cafile=os.environ.get("CURL_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or None
    )
    if _flag("GDAL_HTTP_UNSAFESSL", False):
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    handlers: list[urllib.request.BaseHandler] = [
        _KeepMethod(),
        urllib.request.HTTPSHandler(context=context),
    ]
    proxy = os.environ.get("GDAL_HTTP_PROXY")
    if proxy:
        address = proxy if "://" in proxy else f"http://{proxy}"
        handlers.append(urllib.request.ProxyHandler({"http": address, "https": address}))
    return urllib.request.build_opener(*handlers)


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.upper() not in _FALSE


def _s3_stat(location: RemoteLocation) -> RemoteStat:
    """HEAD of an ``s3://`` object by botocore's S3 client, at the endpoint ``/vsis3/`` uses.

    Endpoint and addressing from GDAL's ``AWS_S3_ENDPOINT``, ``AWS_HTTPS`` and
    ``AWS_VIRTUAL_HOSTING``; region and credentials from botocore's chain (environment, profile
    files, SSO, instance roles); unsigned with ``AWS_NO_SIGN_REQUEST=YES``. Errors come back as
    urllib's (with the HTTP status) or ``OSError`` (no answer), as for https.
    """
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.session import get_session

    bucket, _, key = location.url.split("://", 1)[1].partition("/")
    endpoint = os.environ.get("AWS_S3_ENDPOINT")
    if endpoint and "://" not in endpoint:
        endpoint = f"{'https' if _flag('AWS_HTTPS', True) else 'http'}://{endpoint}"
    session = get_session()
    timeout = float(option("GDAL_HTTP_TIMEOUT"))
    options: dict[str, Any] = {
        "s3": {"addressing_style": "virtual" if _flag("AWS_VIRTUAL_HOSTING", True) else "path"},
        "retries": {"max_attempts": 1},  # retried by remote_stat, like GDAL's requests
        "connect_timeout": timeout,
        "read_timeout": timeout,
    }
    if _flag("AWS_NO_SIGN_REQUEST", False):
        options["signature_version"] = UNSIGNED
    client = session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=session.get_config_variable("region") or "us-east-1",
        config=Config(**options),
    )
    try:
        found = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        raise urllib.error.HTTPError(location.url, status, str(exc), Message(), None) from exc
    except BotoCoreError as exc:
        raise OSError(f"{location}: {exc}") from exc
    modified = found.get("LastModified")
    return RemoteStat(
        found.get("ContentLength"),
        found.get("ETag"),
        modified.isoformat() if modified is not None else None,
    )
