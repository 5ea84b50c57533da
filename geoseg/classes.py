"""The common land-cover class codes shared by every source and model (``../shared/data``)."""

from __future__ import annotations

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
