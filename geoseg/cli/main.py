"""``geoseg`` command-line interface.

Commands stay thin: they parse arguments, call one library function, and print. Every
failure becomes a one-paragraph message on stderr and a documented exit code (see
:func:`_guarded`); ``-v`` adds the traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer
from rasterio.errors import NotGeoreferencedWarning
from rich.console import Console
from rich.logging import RichHandler

from geoseg.errors import ConfigError, GeoSegError, InterruptedRun, root_cause
from geoseg.executor import ExecutorKind
from geoseg.export.raster import GDAL_CACHE_MB

if TYPE_CHECKING:
    from geoseg.workflow.run import StepReport

app = typer.Typer(
    name="geoseg",
    help="Segment large rasters into land-cover class maps, confidence and GIS polygons.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(help="Named data sources (data_catalog.yaml).", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
annotate_app = typer.Typer(
    help="Pre-annotations for labelling tools (CVAT, COCO, Label Studio, QGIS) and back.",
    no_args_is_help=True,
)
app.add_typer(annotate_app, name="annotate")

out = Console(soft_wrap=True)
err = Console(stderr=True)
_state: dict[str, Any] = {"verbosity": 0, "signal": signal.SIGINT}

T = TypeVar("T")


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
        force=True,
    )
    for noisy in ("rasterio", "distributed", "fiona", "pyogrio", "rio_cogeo"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _guarded(action: Callable[[], T], resume_hint: bool = False) -> T:
    """Run ``action``; turn every failure into one message on stderr and an exit code.

    Exit codes: 2 configuration or usage, 1 data or environment, 130 interrupted by SIGINT and
    143 by SIGTERM (with the ``--resume`` command where ``resume_hint``), 70 an unexpected error
    (a bug: ``-v`` shows its traceback).
    """
    try:
        return action()
    except GeoSegError as exc:
        message, code = str(exc), exc.exit_code
        if isinstance(exc, InterruptedRun):
            code = 128 + _state["signal"]
            if resume_hint:
                message += f". Continue with: {_resume_command()}"
        _fail(message, code)
    except KeyboardInterrupt:
        _fail("interrupted before any step started; nothing was written", 128 + _state["signal"])
    except MemoryError:
        _fail(
            "out of memory: lower batch_size or chunk_size (or use fewer workers) and run again",
            1,
        )
    except OSError as exc:
        _fail(root_cause(exc), 1)
    except Exception as exc:
        _fail(
            f"unexpected error (a bug in geoseg; please report it with the output of "
            f"'geoseg -v ...'): {type(exc).__name__}: {root_cause(exc)}",
            70,
        )


def _fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as the one error line (with the traceback under ``-v``) and exit."""
    if _state["verbosity"] > 0:
        err.print_exception()
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _resume_command() -> str:
    """The command line that was run, with ``--resume``.

    ``--overwrite`` stays if it was given: a step without a fingerprint starts again, and may
    need it to replace older outputs.
    """
    args = [a for a in sys.argv[1:] if a not in ("--resume", "--no-resume")]
    return shlex.join(["geoseg", *args, "--resume"])


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C: what finished is kept."""
    _state["signal"] = signum
    raise KeyboardInterrupt


def _version(value: bool) -> None:
    if value:
        from geoseg.versions import library_versions

        for name, ver in library_versions().items():
            out.print(f"{name} {ver}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging.")] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Warnings only, no progress.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show geoseg, GDAL, PROJ, GEOS and torch versions.",
        ),
    ] = False,
) -> None:
    """geoseg: land-cover, crop and weed maps from large rasters."""
    _state["verbosity"] = -1 if quiet else verbose
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    _setup_logging(_state["verbosity"])
    # Bound GDAL's block cache (default: 5 % of RAM) unless the user chose a size.
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
    # rasterio's shapes/rasterize run on several threads sometimes warn "Dataset has no
    # geotransform" about their own in-memory datasets (outputs are unaffected). Set once here,
    # on the main thread, before any worker thread exists.
    warnings.filterwarnings("ignore", "Dataset has no geotransform", NotGeoreferencedWarning)


def _progress() -> bool:
    """Progress bars on a terminal; plain progress lines when ``GEOSEG_PROGRESS=lines``."""
    from geoseg.executor import PROGRESS_ENV

    lines = os.environ.get(PROGRESS_ENV) == "lines"
    return bool(_state["verbosity"] >= 0 and (sys.stderr.isatty() or lines))


@app.command()
def run(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue an unfinished run, computing only missing chunks.")
    ] = False,
    executor: Annotated[
        str | None,
        typer.Option(help="threads, processes or distributed (overrides the workflow)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Dask workers (overrides the workflow).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running dask.distributed scheduler.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a key of the workflow file: KEY.PATH=VALUE (e.g. "
            "steps.0.train.epochs=2); repeatable.",
        ),
    ] = None,
) -> None:
    """Run a workflow: its steps, in order."""
    from geoseg.workflow.plan import plan_workflow
    from geoseg.workflow.run import run_plan

    def action() -> Any:
        plan = plan_workflow(workflow, _overrides(set_))
        spec = plan.executor
        if executor is not None:
            if executor not in ("threads", "processes", "distributed"):
                raise ConfigError(f"--executor {executor!r}: use threads, processes or distributed")
            spec = replace(spec, kind=cast(ExecutorKind, executor))
        if scheduler is not None:
            spec = replace(spec, kind="distributed", address=scheduler)
        if workers is not None:
            spec = replace(spec, workers=workers)
        return run_plan(plan, overwrite, _progress(), resume, spec)

    for report in _guarded(action, resume_hint=True):
        _print_report(report)


def _overrides(pairs: list[str] | None) -> dict[str, str]:
    """``--set KEY=VALUE`` options as a mapping (a pair without ``=`` is a usage error)."""
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: write KEY.PATH=VALUE (e.g. steps.0.train.epochs=2)")
        found[key.strip()] = value
    return found


def _print_report(report: StepReport[Any]) -> None:
    """A step's outputs and figures, as ``geoseg run`` prints them."""
    state = "up to date, nothing to do" if report.up_to_date else "done"
    out.print(f"step {report.index} ({report.kind}) {state}:", highlight=False)
    for path in report.outputs:
        out.print(f"  {path}", highlight=False)
    for line in report.figures.lines() if report.figures is not None else []:
        out.print(f"  {line}", highlight=False)


@app.command()
def validate(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: KEY.PATH=VALUE.")
    ] = None,
) -> None:
    """Check a workflow (schema, names, models, inputs, outputs, memory) without running it."""
    from geoseg.workflow.plan import Plan, plan_workflow
    from geoseg.workflow.step import step_label

    def action() -> Plan:
        plan = plan_workflow(workflow, _overrides(set_))
        written = {p for step in plan.steps for p in step.outputs()}
        for step in plan.steps:
            if not any(p in written for p in step.inputs()):  # its model and inputs exist
                step.check_resources(
                    plan.executor, step_label(plan.path, None, step.index, step.kind)
                )
        return plan

    plan = _guarded(action)
    out.print(f"{plan.path}: valid, {len(plan.steps)} step(s)", highlight=False)
    for step in plan.steps:
        out.print(f"  {step.index}: {step.describe()}", highlight=False)
        for path in step.outputs():
            flag = " (exists: needs --overwrite)" if path.exists() else ""
            out.print(f"     -> {path}{flag}", highlight=False)


@catalog_app.command("list")
def catalog_list(
    catalog: Annotated[Path, typer.Option(help="Catalog file.")] = Path("data_catalog.yaml"),
) -> None:
    """List the named sources of a catalog."""
    from geoseg.catalog import Catalog
    from geoseg.types import is_remote

    loaded = _guarded(lambda: Catalog.load(catalog))
    out.print(f"{loaded.path}: {len(loaded.names)} source(s)", highlight=False)
    for name in loaded.names:
        source = _guarded(functools.partial(loaded.source, name))
        present = sum(not is_remote(p) and p.exists() for p in source.paths)
        remote = sum(is_remote(p) for p in source.paths)
        labels = ",".join(lab.name for lab in source.labels) or "-"
        out.print(
            f"  {name}\n    bands: {', '.join(source.band_names)} ({source.units})\n"
            f"    labels: {labels}\n    files present: {present}/{len(source.paths) - remote} "
            f"local{f', {remote} remote (not checked)' if remote else ''}\n"
            f"    licence: {source.licence}",
            highlight=False,
            soft_wrap=True,
        )


@app.command("evaluate")
def evaluate_command(
    prediction: Annotated[Path, typer.Option(help="Class-map GeoTIFF to evaluate.")],
    source: Annotated[str, typer.Option(help="Catalog source whose labels are the reference.")],
    output: Annotated[Path, typer.Option(help="Folder for metrics, plots and error map.")],
    catalog: Annotated[Path, typer.Option(help="Catalog file.")] = Path("data_catalog.yaml"),
    labels: Annotated[str | None, typer.Option(help="Label layer (default: the first).")] = None,
    tolerance: Annotated[int, typer.Option(help="Boundary tolerance in pixels.")] = 3,
    ignore: Annotated[str | None, typer.Option(help="Comma-separated codes to ignore.")] = None,
    within: Annotated[
        Path | None, typer.Option(help="Mask raster: evaluate only where it is non-zero.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Compare a class map with reference labels: IoU, mIoU, boundary F, plots, error map."""
    import geoseg.api

    def action() -> StepReport[Any]:
        codes = [int(c) for c in ignore.split(",")] if ignore else []
        return geoseg.api.evaluate(
            prediction.resolve(),
            source,
            output.resolve(),
            catalog=catalog,
            overwrite=overwrite,
            show_progress=_progress(),
            labels=labels,
            tolerance=tolerance,
            ignore=codes,
            within=str(within.resolve()) if within else None,
        )

    _print_report(_guarded(action))


@app.command()
def view(
    folder: Annotated[Path, typer.Argument(help="Output folder of a predict run.")],
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    browser: Annotated[bool, typer.Option(help="Open the map in a web browser.")] = True,
) -> None:
    """Serve a run's outputs as a web map (imagery, classes, confidence, errors, polygons)."""
    from geoseg.view.server import open_view

    server = _guarded(lambda: open_view(folder, host, port))
    out.print(f"web map of {folder} at {server.url} (Ctrl-C to stop)", highlight=False)
    if browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def inspect(raster: Annotated[Path, typer.Argument(help="Raster file.")]) -> None:
    """Print a raster's CRS, size, bands, dtype, nodata and block layout."""
    from geoseg.io.raster import inspect_raster

    info = _guarded(lambda: inspect_raster(raster))
    for line in info.lines():
        out.print(line, highlight=False)
    if info.problems:
        raise typer.Exit(1)


@app.command("train")
def train_command(
    source: Annotated[str, typer.Option(help="Catalog source with a label layer.")],
    output: Annotated[Path, typer.Option(help="Bundle folder to write (NAME.geoseg).")],
    catalog: Annotated[Path, typer.Option(help="Catalog file.")] = Path("data_catalog.yaml"),
    labels: Annotated[str | None, typer.Option(help="Label layer name.")] = None,
    bands: Annotated[str | None, typer.Option(help="Comma-separated band names.")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted training from its last epoch.")
    ] = False,
) -> None:
    """Train a network from a labelled catalog source and write a model bundle."""
    import geoseg.api

    def action() -> StepReport[Any]:
        return geoseg.api.train(
            output.resolve(),
            catalog=catalog,
            overwrite=overwrite,
            show_progress=_progress(),
            resume=resume,
            source=source,
            labels=labels,
            epochs=epochs,
            seed=seed,
            device=device,
            bands=bands.split(",") if bands else None,
        )

    _print_report(_guarded(action, resume_hint=True))


@annotate_app.command("export")
def annotate_export(
    predictions: Annotated[Path, typer.Option(help="Output folder of a predict(_images) run.")],
    output: Annotated[Path, typer.Option(help="Folder for the annotation tasks.")],
    image_set: Annotated[
        str | None, typer.Option(help="Image set the predict_images run predicted.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Source the predict run predicted.")] = None,
    formats: Annotated[
        str | None,
        typer.Option(help="Comma-separated: cvat-images,cvat-masks,coco,labelstudio,gpkg."),
    ] = None,
    background: Annotated[
        int | None, typer.Option(help="Class code nobody outlines (e.g. soil).")
    ] = None,
    chip_size: Annotated[int, typer.Option(help="Chip edge in pixels (scenes).")] = 512,
    catalog: Annotated[Path, typer.Option(help="Catalog file.")] = Path("data_catalog.yaml"),
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Write a prediction run's maps as tasks for labelling tools, ranked by priority."""
    import geoseg.api

    def action() -> StepReport[Any]:
        options: dict[str, Any] = {"image_set": image_set, "source": source}
        if formats:
            options["formats"] = formats.split(",")
        if background is not None:
            options["background"] = background
        if source is not None:
            options["chip_size"] = chip_size
        return geoseg.api.export_annotations(
            predictions.resolve(), output.resolve(), catalog, overwrite, **options
        )

    _print_report(_guarded(action))


@annotate_app.command("import")
def annotate_import(
    export: Annotated[Path, typer.Option(help="Folder an export wrote (tasks.json).")],
    format_: Annotated[
        str,
        typer.Option("--format", help="cvat-images, cvat-masks, coco, labelstudio or gpkg."),
    ],
    output: Annotated[Path, typer.Option(help="Folder for the labels and the edit effort.")],
    path: Annotated[
        Path | None, typer.Option(help="Corrected file or folder (default: the export's own).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Read corrected annotations back as labels (with a catalog) and report the edit effort."""
    import geoseg.api

    def action() -> StepReport[Any]:
        return geoseg.api.import_annotations(
            export.resolve(),
            format_,
            output.resolve(),
            path=path.resolve() if path else None,
            overwrite=overwrite,
        )

    _print_report(_guarded(action))


if __name__ == "__main__":
    app()
