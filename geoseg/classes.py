"""The common land-cover class codes shared by every source and model (``../shared/data``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommonClass:
    """A common class: code, name and default display colour."""

    code: int
    name: str
    color: str


COMMON_CLASSES: dict[int, CommonClass] = {
    c.code: c
    for c in (
        CommonClass(1, "water", "#1f78b4"),
        CommonClass(2, "tree", "#1b7837"),
        CommonClass(3, "cropland", "#f0c808"),
        CommonClass(4, "built-up", "#d7301f"),
        CommonClass(5, "grass", "#a6d96a"),
        CommonClass(6, "shrub", "#8c6d31"),
        CommonClass(7, "bare", "#d9c7a7"),
        CommonClass(8, "wetland", "#6a51a3"),
    )
}

NODATA_CODE = 0


#: The band tag of a class map listing the codes its model can predict (``1,2,4,5,6,7``).
CLASS_CODES_TAG = "GEOSEG_CLASS_CODES"


def class_codes_tag(codes: Sequence[int]) -> dict[str, str]:
    """The band tag that records the codes a class map's model can predict."""
    return {CLASS_CODES_TAG: ",".join(str(int(c)) for c in codes)}


def parse_class_codes(tags: Mapping[str, str]) -> tuple[int, ...] | None:
    """The codes recorded by :func:`class_codes_tag` (``None`` when the tag is absent or bad)."""
    text = tags.get(CLASS_CODES_TAG)
    try:
        return tuple(int(c) for c in text.split(",")) if text else None
    except ValueError:
        return None


def common_names() -> dict[int, str]:
    """``{code: name}`` of the common classes."""
    return {code: c.name for code, c in COMMON_CLASSES.items()}


def class_info(code: int) -> CommonClass:
    """The common class ``code`` (codes outside the table get a generated grey)."""
    found = COMMON_CLASSES.get(code)
    if found is not None:
        return found
    grey = 64 + (code * 37) % 160
    return CommonClass(code, f"class {code}", f"#{grey:02x}{grey:02x}{grey:02x}")
