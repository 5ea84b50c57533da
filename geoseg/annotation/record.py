"""What an annotation export holds, recorded once (``tasks.json``), read back by every import.

The record is the one owner of the facts an import needs: the class table (code, name, colour:
labels are mapped by name, explicitly), the background class (pixels no shape covers), and for
each item its image, size, where it lies on its scene (a chip's window and the scene's grid) and
which of its pixels had no data. Formats (:class:`AnnotationFormat`) write and read shapes; the
record says what they mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import numpy as np
import shapely
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field, PrivateAttr, ValidationError

from geoseg.annotation.regions import paint
from geoseg.config import ClosedModel, format_validation_error
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path
from geoseg.export.style import ClassStyle
from geoseg.model.bundle import ClassInfo
from geoseg.types import Window

#: The record's file name in an export folder.
RECORD = "tasks.json"


class SceneRecord(ClosedModel):
    """The grid of the scene that chips were cut from (CRS as WKT, affine ``a, b, c, d, e, f``)."""

    height: int = Field(ge=1)
    width: int = Field(ge=1)
    crs_wkt: str | None
    transform: tuple[float, float, float, float, float, float]  # a, b, c, d, e, f


class ItemRecord(ClosedModel):
    """One image to annotate: a photo, or a chip of a scene."""

    id: str = Field(min_length=1)
    image: str  # relative to the export folder
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    window: tuple[int, int, int, int] | None = None  # row, col, height, width on the scene
    nodata: str | None = None  # a PNG mask (255 = no data) relative to the export folder
    priority: float | None = None  # higher: label first (see geoseg.annotation.priority)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def chip(self) -> Window | None:
        """Where the item lies on its scene (None for a photo)."""
        return Window(*self.window) if self.window is not None else None


class ExportRecord(ClosedModel):
    """An annotation export: its classes, background, scene and items."""

    format: Literal["geoseg-annotations"] = "geoseg-annotations"
    version: Literal[1] = 1
    source: str = ""  # the run the pre-annotations come from, in words
    origin: str | None = None  # the catalog name of its image set or source
    classes: list[ClassInfo] = Field(min_length=1)
    background: int | None = None  # the class nobody outlines: pixels no shape covers
    scene: SceneRecord | None = None
    items: list[ItemRecord] = Field(default_factory=list)
    _folder: Path | None = PrivateAttr(default=None)

    def code(self, name: str, where: str) -> int:
        """The code of class ``name``; an unknown name is an error naming ``where`` it was."""
        for info in self.classes:
            if info.name == name:
                return info.code
        known = ", ".join(c.name for c in self.classes)
        raise AnnotationError(
            f"{where}: label '{name}' is not one of the exported classes ({known}); rename it "
            "in the labelling tool or add it to the image set's classes"
        )

    def item(self, item_id: str, where: str) -> ItemRecord:
        """The item ``item_id``; one the export did not make is an error naming ``where``."""
        for item in self.items:
            if item.id == item_id:
                return item
        raise AnnotationError(
            f"{where}: image '{item_id}' is not one of the {len(self.items)} exported items; "
            "import only images exported with this record"
        )

    @property
    def styles(self) -> tuple[ClassStyle, ...]:
        """The classes with their colours, as styles and colour-coded masks need them."""
        return tuple(ClassStyle(c.code, c.name, c.color) for c in self.classes)

    @property
    def fill(self) -> int:
        """The code of pixels no shape covers: the background class, else 0 (unlabelled)."""
        return self.background if self.background is not None else 0

    @property
    def folder(self) -> Path | None:
        """The export folder this record was read from or written to (its no-data masks)."""
        return self._folder

    def write(self, folder: Path) -> Path:
        """Write ``folder/tasks.json`` atomically."""
        path = folder / RECORD
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        self._folder = folder
        return path

    @classmethod
    def read(cls, folder: Path) -> ExportRecord:
        """The record of the export in ``folder``, with errors naming the file."""
        path = folder / RECORD
        try:
            record = cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise AnnotationError(
                f"{path} does not exist: import from a folder that geoseg exported annotations to"
            ) from exc
        except ValidationError as exc:
            raise AnnotationError(format_validation_error(exc, cls, path, "export record")) from exc
        record._folder = folder
        return record


def write_nodata(item: ItemRecord, classes: NDArray[np.uint8], folder: Path) -> ItemRecord:
    """Record which pixels of ``classes`` have no data (code 0) as a PNG mask, if any do.

    Returns the item with its ``nodata`` mask named (unchanged when every pixel has data).
    """
    missing = classes == 0
    if not missing.any():
        return item
    name = f"nodata/{item.id}.png"
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / name, overwrite=True) as tmp:
        Image.fromarray(np.where(missing, 255, 0).astype(np.uint8)).save(tmp, format="PNG")
    return item.model_copy(update={"nodata": name})


def restore_nodata(classes: NDArray[np.uint8], item: ItemRecord, folder: Path) -> NDArray[np.uint8]:
    """``classes`` with the item's no-data pixels (its recorded mask) set back to 0.

    ``folder`` is where the mask is looked for when the record does not know its export folder
    (a record read with :meth:`ExportRecord.read` does: corrected files may come from anywhere).
    """
    if item.nodata is None:
        return classes
    path = folder / item.nodata
    try:
        with Image.open(path) as image:
            missing = np.asarray(image.convert("L")) > 0
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"cannot read the no-data mask {path}: {exc}") from exc
    if missing.shape != classes.shape:
        raise AnnotationError(
            f"{path} is {missing.shape[1]}x{missing.shape[0]} px but item '{item.id}' is "
            f"{item.width}x{item.height}"
        )
    return np.where(missing, 0, classes).astype(np.uint8)


def paint_largest_first(
    shapes: Sequence[tuple[shapely.Polygon, int]],
    item: ItemRecord,
    record: ExportRecord,
    folder: Path,
) -> NDArray[np.uint8]:
    """The item's class map from ``shapes``: painted from the largest exterior to the smallest.

    Pixels no shape covers take the record's background (else 0), and the item's no-data pixels
    (its mask in ``folder``) are set back to 0. Equal exteriors keep their order in ``shapes``.
    """
    ordered = sorted(shapes, key=lambda s: -shapely.Polygon(s[0].exterior).area)
    return restore_nodata(paint(ordered, item.shape, record.fill), item, record.folder or folder)


@dataclass(frozen=True)
class Prediction:
    """One item's pre-annotation: its class map and (optionally) confidence, on the item's size."""

    item: ItemRecord
    classes: NDArray[np.uint8]
    confidence: NDArray[np.float32] | None = None


class AnnotationFormat(Protocol):
    """A labelling tool's file format: writes pre-annotations, reads corrections back.

    ``write`` puts the format's files into ``folder`` (beside the images and the record) and
    returns them; ``read`` returns each item's class map (on the item's size, background where
    no shape is, no data where the record's mask says) from a file or folder in that format,
    naming the file in every error (an unknown label, an unknown image, a wrong size, a corrupt
    file).
    """

    name: ClassVar[str]

    def write(
        self, predictions: Sequence[Prediction], record: ExportRecord, folder: Path
    ) -> list[Path]:
        """Write the pre-annotations; the files written."""
        ...

    def read(self, path: Path, record: ExportRecord) -> dict[str, NDArray[np.uint8]]:
        """Read corrected annotations: ``{item id: class map}``."""
        ...
