"""Running the suites with Great Expectations on Spark, and what comes out: per table, whether it
passed and, for every expectation that failed, what it checks, what was observed and examples.

One ephemeral GX context per run (results pile up in a context's in-memory store), validations one
after another (GX names every Spark batch's temp view alike, so parallel runs in one process would
read each other's data), and, when `docs_dir` is given, GX's own HTML pages (Data Docs) written there.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from core.quality_bounds import QualityBounds
from data_quality.specs import TABLE_SPECS, TableSpec
from data_quality.suites import coverage_suite, groups_suite, rows_suite
from data_quality.views import DERIVED_PREFIX, Reader, coverage_view, groups_view, rows_view

DOCS_SITE = "homefeed"
MAX_EXAMPLES = 5

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectationOutcome:
    suite: str
    expectation: str  # GX's type, e.g. expect_column_values_to_be_null
    description: str
    success: bool
    column: str | None = None
    observed: object = None
    unexpected_count: int | None = None
    examples: list = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        """One line for a terminal: what failed, what was seen, a few examples."""
        parts = [f"{self.description} [{self.expectation}]"]
        if self.error:
            parts.append(f"error: {self.error}")
        if self.unexpected_count:
            parts.append(f"{self.unexpected_count} bad rows")
        elif self.observed is not None:
            parts.append(f"observed {self.observed}")
        if self.examples:
            parts.append("e.g. " + "; ".join(map(str, self.examples)))
        return " | ".join(parts)


@dataclass(frozen=True)
class TableCheck:
    table: str
    success: bool
    outcomes: list[ExpectationOutcome]
    rows: int | None = None
    docs: list[str] = field(default_factory=list)
    error: str | None = None  # the table could not be checked at all (missing, unreadable)
    # Where the check's time went: `rows_view` (the derived columns: reference joins, rank and key
    # windows, written to disk once), then each suite by name.
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_metadata(self) -> dict:
        return json.loads(
            json.dumps(
                {
                    "table": self.table,
                    "success": self.success,
                    "rows": self.rows,
                    "error": self.error,
                    "expectations": len(self.outcomes),
                    "failed": len(self.failures),
                    "failures": [o.__dict__ for o in self.failures],
                    "phase_seconds": self.phase_seconds,
                },
                default=str,
            )
        )


def gx_context(docs_dir: Path | None = None):
    """An ephemeral GX context without progress bars, with a Data Docs site in `docs_dir` if given."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    sites = {}
    if docs_dir is not None:
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    return gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            data_docs_sites=sites,
        ),
    )


def _batch_definition(context, asset_name: str):
    try:
        source = context.data_sources.get("spark")
    except KeyError:
        source = context.data_sources.add_spark("spark", persist=False)  # persisting is ours to decide
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition("whole")
    except KeyError:
        return asset.add_batch_definition_whole_dataframe("whole")


def run_suite(context, frame: DataFrame, suite) -> tuple[list[ExpectationOutcome], str | None]:
    """Validate `frame` against `suite`; the outcomes and the Data Docs page of the result (if any).

    Two passes: every expectation first with result format BOOLEAN_ONLY (GX then bundles the
    unexpected counts into a few aggregate Spark jobs instead of collecting examples expectation by
    expectation), then, only when some failed, those again with SUMMARY for what was observed and
    examples of the offending rows."""
    import great_expectations as gx

    outcomes, page = validate_once(context, frame, suite, "BOOLEAN_ONLY")
    failed = {o.description for o in outcomes if not o.success}
    if not failed:
        return outcomes, page
    details = gx.ExpectationSuite(
        name=f"{suite.name}.failures",
        expectations=[
            _unsaved_copy(e) for e in suite.expectations if (e.description or e.configuration.type) in failed
        ],
    )
    explained, page = validate_once(context, frame, details, "SUMMARY")
    # Failed in the first pass is failed: the second only adds what was observed and examples.
    by_description = {o.description: replace(o, suite=suite.name, success=False) for o in explained}
    return [by_description.get(o.description, o) if not o.success else o for o in outcomes], page


def _unsaved_copy(expectation):
    copy = expectation.configuration.to_domain_obj()
    copy.id = None
    return copy


def validate_once(context, frame: DataFrame, suite, result_format: str) -> tuple[list[ExpectationOutcome], str | None]:
    """One GX validation of `frame` against `suite` with `result_format` (BOOLEAN_ONLY, SUMMARY, ...)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    batch = _batch_definition(context, suite.name)
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=suite)
    )
    has_docs = DOCS_SITE in context.list_data_docs_sites()
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite.name,
            validation_definitions=[definition],
            result_format={"result_format": result_format, "partial_unexpected_count": MAX_EXAMPLES},
            actions=[UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE])] if has_docs else [],
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    ((key, result),) = run.run_results.items()
    page = (
        context.get_docs_sites_urls(resource_identifier=key, site_name=DOCS_SITE)[0]["site_url"] if has_docs else None
    )
    return [_outcome(suite.name, r) for r in result.results], page


def _outcome(suite_name: str, r) -> ExpectationOutcome:
    config, result = r.expectation_config, (r.result or {})
    examples = result.get("partial_unexpected_list") or []
    return ExpectationOutcome(
        suite=suite_name,
        expectation=config.type,
        description=config.description or config.type,
        success=bool(r.success),
        column=config.kwargs.get("column"),
        observed=result.get("observed_value"),
        unexpected_count=result.get("unexpected_count"),
        examples=list(examples[:MAX_EXAMPLES]),
        error=_exception_message(r.exception_info),
    )


def _exception_message(info) -> str | None:
    """GX keeps a metric's failure (a missing column, a wrong type) in `exception_info` instead of raising."""
    info = info or {}
    if info.get("raised_exception"):
        return (info.get("exception_message") or "").splitlines()[0] or "error"
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    return "; ".join(dict.fromkeys(m.splitlines()[0] for m in messages if m)) or None


def schema_mismatches(table: DataFrame, spec: TableSpec) -> list[str]:
    """Declared columns whose Spark type differs from the declaration, element types included
    (GX's type check sees only 'an array')."""
    actual = {f.name: f.dataType.simpleString() for f in table.schema.fields}
    return [
        f"{c.name}: {actual[c.name]}, declared {c.dtype}"
        for c in spec.columns
        if c.name in actual and actual[c.name] != c.dtype
    ]


def check_table(
    table: DataFrame,
    spec: TableSpec,
    read: Reader,
    *,
    as_of: datetime,
    bounds: QualityBounds = QualityBounds(),
    context=None,
) -> TableCheck:
    """Every suite of `spec` on `table` (`read` gives the tables its references and populations name)."""
    context = context or gx_context()
    outcomes, pages = [], []
    phases = PhaseClock(spec.name)
    # Checkpointed: GX runs many small jobs over the frame, and each would otherwise analyse and
    # optimise the table's whole plan again (seconds each for training_examples). On disk, not in
    # memory: a big table's view (the candidates of the Higgs import) ran the columnar in-memory
    # cache out of heap.
    with phases("rows_view"):
        rows = rows_view(table, spec, read, as_of=as_of).localCheckpoint(
            eager=True, storageLevel=StorageLevel.DISK_ONLY
        )
    try:
        count = rows.count()
        derived = [c for c in rows.columns if c.startswith(DERIVED_PREFIX)]
        suite = rows_suite(spec, bounds, derived=derived, empty=count == 0)
        with phases(suite.name):
            found, page = run_suite(context, rows, suite)
        outcomes += found
        pages += [page] if page else []
        # A mean over no groups or no population members is undefined: an empty table is the row
        # count's business, an empty population (nobody active) the freshness checks'.
        # Both built on the persisted rows, each persisted itself: GX runs several jobs over a frame.
        aggregates = [(groups_view(rows, g), groups_suite(spec, i, bounds)) for i, g in enumerate(spec.group_sizes)]
        aggregates += [
            (coverage_view(rows, c, read, as_of=as_of), coverage_suite(spec, i, bounds))
            for i, c in enumerate(spec.coverage)
        ]
        for frame, suite in aggregates:
            frame = frame.persist(StorageLevel.DISK_ONLY)
            try:
                with phases(suite.name):
                    if frame.isEmpty():
                        outcomes.append(
                            ExpectationOutcome(
                                suite=suite.name,
                                expectation="skipped",
                                success=True,
                                description=f"{suite.name}: nothing to measure (no rows)",
                            )
                        )
                        continue
                    found, page = run_suite(context, frame, suite)
                outcomes += found
                pages += [page] if page else []
            finally:
                frame.unpersist()
    finally:
        release_checkpoint(rows)
    outcomes += [
        ExpectationOutcome(suite=f"{spec.name}.rows", expectation="schema", description=f"{m}", success=False)
        for m in schema_mismatches(table, spec)
    ]
    return TableCheck(
        spec.name, all(o.success for o in outcomes), outcomes, rows=count, docs=pages, phase_seconds=phases.seconds
    )


class PhaseClock:
    """Seconds per named phase of one table's check, each logged as it ends."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = round(time.perf_counter() - started, 3)
            logger.info("data-quality check of %s: %s took %.1f s", self.table, phase, self.seconds[phase])


def release_checkpoint(frame: DataFrame) -> None:
    """Drop the blocks of a localCheckpoint'ed frame now (DataFrame.unpersist does not reach them; left
    alone they wait for a JVM garbage collection, which a long-lived Dagster process may not do soon)."""
    with suppress(Exception):
        frame._jdf.queryExecution().logical().rdd().unpersist(True)


def check_tables(
    names: Iterable[str],
    read: Reader,
    *,
    as_of: datetime,
    bounds: QualityBounds = QualityBounds(),
    docs_dir: Path | None = None,
    exists: Callable[[str], bool] = lambda name: True,
) -> list[TableCheck]:
    """`check_table` for each named table, one GX context for all; a table that is missing or cannot
    be read fails with that as its error rather than stopping the others."""
    context = gx_context(docs_dir)
    results = []
    for name in names:
        spec = TABLE_SPECS[name]
        if not exists(name):
            results.append(TableCheck(name, False, [], error=f"{name} does not exist"))
            continue
        try:
            results.append(check_table(read(name), spec, read, as_of=as_of, bounds=bounds, context=context))
        except Exception as exc:
            results.append(TableCheck(name, False, [], error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
    if docs_dir is not None:
        context.build_data_docs(site_names=[DOCS_SITE])
    return results
