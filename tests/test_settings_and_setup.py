"""Configuration fails fast; set-up helpers are right about what they parse."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from cli.output import format_rows
from core.settings import HomefeedSettings, load_settings
from core.setup_checks import parse_java_major
from jobs.spark_session import jars_not_in_spark


def test_defaults_match_the_documented_ones(monkeypatch):
    for name in ("WAREHOUSE", "SPARK_MASTER", "REDIS_URL", "RAW_INPUT", "AS_OF"):
        monkeypatch.delenv(f"HOMEFEED_{name}", raising=False)
    settings = load_settings()
    assert settings.warehouse == "warehouse"
    assert settings.spark_master == "local[*]"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.as_of is None


def test_environment_is_read_and_flags_win(monkeypatch, tmp_path):
    monkeypatch.setenv("HOMEFEED_WAREHOUSE", str(tmp_path / "env"))
    monkeypatch.setenv("HOMEFEED_SPARK_MASTER", "spark://10.0.0.5:7077")
    monkeypatch.setenv("HOMEFEED_AS_OF", "2026-11-01T00:00:00Z")
    settings = load_settings(warehouse=tmp_path / "flag", raw_input=None)
    assert settings.warehouse == str(tmp_path / "flag")
    assert settings.spark_master == "spark://10.0.0.5:7077"
    assert settings.as_of.isoformat() == "2026-11-01T00:00:00+00:00"
    assert settings.tables_dir == (tmp_path / "flag").resolve() / "tables"


@pytest.mark.parametrize(
    "variable, value",
    [
        ("HOMEFEED_SPARK_MASTER", "localhost"),
        ("HOMEFEED_REDIS_URL", "http://127.0.0.1:6379"),
        ("HOMEFEED_SPARK_DRIVER_MEMORY", "lots"),
        ("HOMEFEED_SPARK_SHUFFLE_PARTITIONS", "0"),
        ("HOMEFEED_AS_OF", "yesterday"),
    ],
)
def test_bad_configuration_fails_fast_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as error:
        HomefeedSettings()
    assert variable.removeprefix("HOMEFEED_").lower() in str(error.value)


@pytest.mark.parametrize(
    "output, major",
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("no version here", None),
    ],
)
def test_parse_java_major(output, major):
    assert parse_java_major(output) == major


def test_jars_spark_ships_are_left_out():
    resolved = [
        Path(n)
        for n in (
            "io.delta_delta-spark_4.2_2.13-4.4.0.jar",
            "io.delta_delta-storage-4.4.0.jar",
            "org.apache.parquet_parquet-column-1.16.0.jar",
            "com.fasterxml.jackson.core_jackson-core-2.13.5.jar",
        )
    ]
    shipped = ["parquet-column-1.15.2.jar", "jackson-core-2.18.2.jar", "spark-sql_2.13-4.2.0.jar"]
    assert [p.name for p in jars_not_in_spark(resolved, shipped)] == [
        "io.delta_delta-spark_4.2_2.13-4.4.0.jar",
        "io.delta_delta-storage-4.4.0.jar",
    ]


def test_format_rows_table_csv_json():
    columns, rows = ["id", "name"], [(1, "a,b"), (22, None)]
    assert format_rows(columns, rows, "json") == '[{"id": 1, "name": "a,b"}, {"id": 22, "name": null}]'
    assert format_rows(columns, rows, "csv") == 'id,name\n1,"a,b"\n22,'
    assert format_rows(columns, rows, "table").splitlines() == [
        "id  name",
        "--  ----",
        "1   a,b",
        "22  NULL",
        "(2 rows)",
    ]
