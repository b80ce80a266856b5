"""The real Higgs dataset, imported and ingested end to end through Spark (slow: ~2 minutes)."""

import pytest
from conftest import HIGGS_DIR

from core.contract import RAW_TABLES
from jobs.delta_io import rows_in_table
from jobs.higgs_import import import_higgs
from orchestration.run import run_assets

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not HIGGS_DIR.is_dir(), reason=f"Higgs dataset not found at {HIGGS_DIR}")
def test_higgs_ingests_without_losing_a_row(settings, spark, tmp_path):
    summary = import_higgs(src_dir=HIGGS_DIR, out_dir=tmp_path / "higgs")
    from datetime import timedelta

    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    # Built as of the data's end (July 2012), as a deployment would build it the day it lands: as of
    # today, every freshness check would (rightly) fail on 14-year-old tweets.
    newest = pc.max(
        ds.dataset(tmp_path / "higgs" / "raw" / "engagements").to_table(columns=["created_at"]).column("created_at")
    ).as_py()
    run_settings = settings.model_copy(
        update={
            "raw_input": tmp_path / "higgs" / "raw",
            "warehouse": tmp_path / "warehouse",
            "as_of": newest + timedelta(seconds=1),
        }
    )
    outcome = run_assets(run_settings)
    assert outcome.success, (outcome.failures, outcome.failed_checks)
    for table in RAW_TABLES:
        assert rows_in_table(run_settings.tables_dir / table.name) == summary.rows_per_table[table.name]
        assert rows_in_table(run_settings.tables_dir / f"quarantine_{table.name}") == 0
