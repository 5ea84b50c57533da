"""STAC Items as catalog sources: bands picked by name from an item's assets.

A catalog source ``{stac: ITEM, bands: [{name: red}, {name: nir}]}`` names a STAC Item (a local
JSON file or an ``https://`` URL). Each band is found among the item's raster assets by, in
order: the asset key (``red``), then the asset's band metadata, by common name (``eo:bands`` /
STAC 1.1 ``bands`` ``common_name``, ``eo:common_name``) or band name (``B04``). Its nodata,
scale and offset come from the asset's ``raster:bands`` (STAC 1.1: ``nodata``, ``raster:scale``,
``raster:offset`` on ``bands``) unless the catalog gives them, so the source reads the values
the item says it holds. Hrefs are resolved against the item's own location. Reading the item is
the only I/O here, done when the source is resolved (never when the catalog is loaded); the
assets are opened later, like any catalog file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urljoin
from urllib.request import urlopen

from geoseg.errors import CatalogError
from geoseg.types import Location, RemoteLocation

#: Media types of assets holding raster data (an asset without a type counts when its roles
#: include "data").
RASTER_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-hdf")
NOT_DATA = {"thumbnail", "overview", "metadata", "visual"}
TIMEOUT_S = 30


@dataclass(frozen=True, slots=True)
class StacBand:
    """One band found in an item: where it is and what the item says about its values."""

    asset: str
    location: Location
    band: int
    nodata: float | None
    scale: float | None
    offset: float | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class StacItem:
    """A STAC Item read from ``location``: its id, properties and assets as JSON."""

    location: Location
    id: str
    properties: dict[str, Any]
    assets: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, location: Location) -> StacItem:
        """Read and check the item at ``location``; a :class:`CatalogError` says what is wrong."""
        data = _read_json(location, "the STAC item")
        if not isinstance(data, dict) or data.get("type") != "Feature":
            kind = data.get("type") if isinstance(data, dict) else type(data).__name__
            raise CatalogError(
                f"{location} is not a STAC Item (its type is {kind!r}, not 'Feature'); name an "
                "item's JSON file or URL (a collection or catalog holds many scenes: use a "
                "predict step's 'scenes:')"
            )
        assets = data.get("assets")
        if not isinstance(assets, dict) or not assets:
            raise CatalogError(f"the STAC item {location} has no assets")
        return cls(location, str(data.get("id", "")), dict(data.get("properties") or {}), assets)

    def href(self, asset: str) -> Location:
        """The asset's href, resolved against the item's location."""
        href = str(self.assets[asset].get("href", ""))
        if not href:
            raise CatalogError(f"the STAC item {self.location}: asset '{asset}' has no href")
        try:
            if isinstance(self.location, RemoteLocation):
                return RemoteLocation(urljoin(self.location.url, href))
            if "://" in href:
                return RemoteLocation(href)
        except ValueError as exc:  # file:// under a remote item, or another scheme
            where = f"the STAC item {self.location}: asset '{asset}'"
            raise CatalogError(f"{where}: {exc}") from exc
        return (Path(self.location).parent / href).resolve()

    def raster_assets(self) -> list[str]:
        """Keys of the assets that hold raster data, in the item's order."""
        keys = []
        for key, asset in self.assets.items():
            media = str(asset.get("type", "")).split(";")[0].strip()
            roles = set(asset.get("roles") or [])
            if roles & NOT_DATA and "data" not in roles:
                continue
            if media in RASTER_TYPES or (not media and "data" in roles):
                keys.append(key)
        return keys

    def band(self, name: str) -> StacBand:
        """The band called ``name`` (asset key, common name or band name)."""
        keys = self.raster_assets()
        if name in keys:
            return self._band(name, 0)
        found = [
            (key, i)
            for key in keys
            for i, meta in enumerate(_band_metadata(self.assets[key]))
            if name in (meta.get("common_name"), meta.get("eo:common_name"), meta.get("name"))
        ]
        if len(found) > 1:
            raise CatalogError(
                f"the STAC item {self.location}: band '{name}' is in more than one asset "
                f"({', '.join(k for k, _ in found)}); name the asset key instead"
            )
        if not found:
            names = sorted(
                {
                    str(n)
                    for key in keys
                    for meta in _band_metadata(self.assets[key])
                    for n in (meta.get("common_name"), meta.get("eo:common_name"))
                    if n
                }
            )
            raise CatalogError(
                f"the STAC item {self.location} has no band '{name}': its raster assets are "
                f"{keys} and their common names {names}; name one of them (as the band's "
                "'asset:' to keep your band name)"
            )
        key, index = found[0]
        return self._band(key, index)

    def _band(self, key: str, index: int) -> StacBand:
        asset = self.assets[key]
        bands = _band_metadata(asset)
        meta = bands[index] if index < len(bands) else {}
        raster = asset.get("raster:bands") or []
        values = {**(raster[index] if index < len(raster) else {}), **meta}
        return StacBand(
            key,
            self.href(key),
            index + 1,
            _number(values.get("nodata")),
            _number(values.get("scale", values.get("raster:scale"))),
            _number(values.get("offset", values.get("raster:offset"))),
            values.get("unit"),
        )


def _band_metadata(asset: dict[str, Any]) -> list[dict[str, Any]]:
    """An asset's per-band metadata: STAC 1.1 ``bands``, else ``eo:bands``."""
    bands = asset.get("bands") or asset.get("eo:bands") or []
    return [b for b in bands if isinstance(b, dict)]


def _number(value: Any) -> float | None:
    """A nodata/scale/offset value as a float ("nan" included); None when absent."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class SceneItem:
    """One item of a STAC catalog, collection or ItemCollection: its id, href and date."""

    id: str
    location: Location
    datetime: str


def stac_scenes(location: Location) -> list[SceneItem]:
    """Every item of a static STAC catalog, collection or ItemCollection, in the order listed.

    A catalog or collection is walked recursively; an ItemCollection's items must link to their
    own JSON (``self``). Items are named by their href, so each scene is read later exactly as
    a ``stac:`` source is. Raises :class:`CatalogError` naming what cannot be read.
    """
    import pystac

    href = location.url if isinstance(location, RemoteLocation) else str(location)
    data = _read_json(location, "the STAC catalog")
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "FeatureCollection":
            collection = pystac.ItemCollection.from_dict(data, preserve_dict=False)
            items = list(collection.items)
            loose = [i.id for i in items if i.get_self_href() is None]
            if loose:
                raise CatalogError(
                    f"the ItemCollection {location} holds items without a 'self' link "
                    f"({', '.join(loose[:5])}): save them as a static catalog (pystac: "
                    "catalog.normalize_hrefs(FOLDER); catalog.save()) and name its catalog.json"
                )
        elif kind in ("Catalog", "Collection"):
            catalog = pystac.read_dict(data, href=href)  # children resolve against href
            assert isinstance(catalog, pystac.Catalog)
            items = list(catalog.get_items(recursive=True))
        else:
            raise CatalogError(
                f"{location} is not a STAC catalog, collection or ItemCollection (its type is "
                f"{kind!r}); name the catalog.json or collection.json of a static catalog"
            )
    except CatalogError:
        raise
    except pystac.STACError as exc:
        raise CatalogError(f"the STAC catalog {location} is not valid STAC: {exc}") from exc
    except (OSError, ValueError) as exc:  # a child link that cannot be read (HTTP, missing file)
        raise CatalogError(f"cannot read the STAC catalog {location}: {exc}") from exc
    scenes = []
    for item in items:
        self_href = item.get_self_href()
        assert self_href is not None  # items read from files, or refused above
        when = item.datetime.isoformat() if item.datetime else ""
        scenes.append(SceneItem(item.id, _location(self_href), when))
    return scenes


def _read_json(location: Location, what: str) -> Any:
    """The JSON document at a path or URL (one timeout for every URL); errors name ``what``."""
    try:
        if isinstance(location, RemoteLocation):
            with urlopen(location.url, timeout=TIMEOUT_S) as response:
                text = response.read().decode("utf-8")
        else:
            text = Path(location).read_text(encoding="utf-8")
        return json.loads(text)
    except (OSError, URLError) as exc:
        raise CatalogError(f"cannot read {what} {location}: {exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{what} {location} is not JSON: {exc}") from exc


def _location(href: str) -> Location:
    """An item href as geoseg keeps locations: a remote object or an absolute path."""
    if "://" in href and not href.startswith("file://"):
        return RemoteLocation(href)
    return Path(href.removeprefix("file://")).resolve()
