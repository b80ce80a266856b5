"""The `homefeed` commands that need no Spark: generate, import-higgs, the DuckDB shell."""

import subprocess
import sys
from datetime import UTC

import pyarrow.parquet as pq
import pytest
from conftest import HIGGS_DIR, REPO_ROOT

import cli.world
from cli.main import main
from cli.settings import with_world_build_time
from core.contract import RAW_TABLES, arrow_schema


def test_generate_writes_every_contract_table_and_truth(tmp_path, capsys):
    assert main(["generate", "--users", "200", "--seed", "5", "--out", str(tmp_path / "w")]) == 0
    for table in RAW_TABLES:
        files = sorted((tmp_path / "w" / "raw" / table.name).glob("*.parquet"))
        assert files, table.name
        assert pq.read_schema(files[0]).remove_metadata() == arrow_schema(table)
    assert (tmp_path / "w" / "truth" / "metadata.json").exists()
    assert "generated 200 users (seed 5)" in capsys.readouterr().out


@pytest.mark.skipif(not HIGGS_DIR.is_dir(), reason=f"Higgs dataset not found at {HIGGS_DIR}")
def test_import_higgs_command(tmp_path, capsys):
    assert main(["import-higgs", "--src", str(HIGGS_DIR), "--out", str(tmp_path / "h")]) == 0
    out = capsys.readouterr().out
    # 355,075 lines minus the cut source's 23, the cut line and 14 self-follows (docs/higgs_import.md)
    assert "follows" in out and "355,037" in out
    assert pq.read_metadata(tmp_path / "h" / "raw" / "tweets" / "part-00000.parquet").num_rows > 0


def test_duckdb_shell_runs_statements_from_stdin(tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "tables" / "users"), pa.table({"user_id": [1, 2, 3]}))
    shell = subprocess.run(
        [sys.executable, "-m", "cli", "duckdb", "--warehouse", str(tmp_path)],
        input=".tables\nSELECT sum(user_id)\n  AS total FROM users;\n.quit\n",
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    assert "users" in shell.stdout
    assert "total\n-----\n6" in shell.stdout


def test_a_generated_world_builds_as_of_its_end_unless_as_of_is_set(tmp_path):
    import json
    from datetime import datetime

    from core.settings import load_settings

    (tmp_path / "world" / "truth").mkdir(parents=True)
    (tmp_path / "world" / "truth" / "metadata.json").write_text(
        json.dumps({"config": {"end_time": "2026-11-01T00:00:00+00:00"}})
    )
    world = load_settings(raw_input=tmp_path / "world" / "raw").model_copy(update={"as_of": None})
    assert with_world_build_time(world).as_of == datetime(2026, 11, 1, tzinfo=UTC)
    chosen = datetime(2026, 10, 30, tzinfo=UTC)
    assert with_world_build_time(world.model_copy(update={"as_of": chosen})).as_of == chosen
    elsewhere = world.model_copy(update={"raw_input": tmp_path / "other" / "raw"})
    assert with_world_build_time(elsewhere).as_of is None


def test_a_spark_error_escaping_a_command_prints_its_exception_lines_not_the_jvm_frames(monkeypatch, capsys):
    jvm_error = (
        "An error occurred while calling o7.save.\n: java.io.IOException: No space left on device\n"
        "\tat org.apache.hadoop.fs.RawLocalFileSystem.write(RawLocalFileSystem.java:321)\n\t... 9 more\n"
    )

    def failing_generate(args):
        raise RuntimeError(jvm_error)

    monkeypatch.setattr(cli.world, "cmd_generate", failing_generate)
    assert main(["generate", "--users", "10", "--out", "unused"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: RuntimeError: An error occurred while calling o7.save.\n"
        ": java.io.IOException: No space left on device\n"
    )
