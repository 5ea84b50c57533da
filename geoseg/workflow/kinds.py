"""The step kinds a workflow may use: the one dispatch table.

Adding a step kind is one module in :mod:`geoseg.workflow.steps` (its config model, its planned
type and its run) plus one entry here (docs/DESIGN.md §15). Nothing else names kinds: schema
validation, planning, running, the command line and the manifest all go through this table.
"""

from __future__ import annotations

from typing import Any

from geoseg.workflow.step import PlannedStep
from geoseg.workflow.steps.change import PlannedChange
from geoseg.workflow.steps.evaluate import PlannedEvaluate
from geoseg.workflow.steps.export_annotations import PlannedExportAnnotations
from geoseg.workflow.steps.images import PlannedImages
from geoseg.workflow.steps.import_annotations import PlannedImportAnnotations
from geoseg.workflow.steps.label_qa import PlannedLabelQa
from geoseg.workflow.steps.predict import PlannedPredict
from geoseg.workflow.steps.scenes import PlannedScenes
from geoseg.workflow.steps.train import PlannedTrain
from geoseg.workflow.steps.zonal import PlannedZonal

#: Step kind -> its planned type (which names its config model), in documentation order.
KINDS: dict[str, type[PlannedStep[Any]]] = {
    step.kind: step
    for step in (
        PlannedTrain,
        PlannedPredict,
        PlannedEvaluate,
        PlannedZonal,
        PlannedChange,
        PlannedImages,
        PlannedScenes,
        PlannedExportAnnotations,
        PlannedImportAnnotations,
        PlannedLabelQa,
    )
}
