"""The floors of docs/architecture.md, checked on what a process really loads (import-linter, run by
`make lint`, checks the imports as written)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH_AND_UPPER_FLOORS = ("jobs", "orchestration", "features", "models", "data_quality", "evaluation", "cli")
HEAVY_FRAMEWORKS = ("pyspark", "dagster", "delta", "great_expectations", "torch", "xgboost")
PACKAGES = (
    "core",
    "features",
    "models",
    "jobs",
    "data_quality",
    "orchestration",
    "evaluation",
    "cli",
    "serving",
    "benchmarks",
)


def modules_loaded_by(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    env = {"HOMEFEED_ENV": "development", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_api_app_loads_only_the_ground_floor_and_serving():
    loaded = top_level(
        modules_loaded_by(
            "from core.settings import load_settings\nfrom serving.api import create_app\ncreate_app(load_settings())"
        )
    )
    assert {"core", "serving", "fastapi"} <= loaded
    assert loaded.isdisjoint(BATCH_AND_UPPER_FLOORS), sorted(loaded & set(BATCH_AND_UPPER_FLOORS))
    assert loaded.isdisjoint(HEAVY_FRAMEWORKS), sorted(loaded & set(HEAVY_FRAMEWORKS))


def test_the_ground_floor_loads_no_framework():
    loaded = top_level(
        modules_loaded_by(
            "import core.contract, core.feed_heuristics, core.filters, core.heads, core.redis_layout, "
            "core.settings, core.sources, core.storage"
        )
    )
    assert loaded.isdisjoint({*HEAVY_FRAMEWORKS, "fastapi", *BATCH_AND_UPPER_FLOORS, "serving"})


def test_the_architecture_check_finds_an_import_that_points_up(tmp_path):
    """lint-imports, as `make lint` runs it, fails on a ground-floor module importing the batch."""
    upward = ROOT / "core" / "_upward_import_probe.py"
    upward.write_text("import jobs.ranking  # noqa: F401\n")
    try:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        upward.unlink()
    assert result.returncode != 0
    assert "core._upward_import_probe -> jobs.ranking" in result.stdout


def _python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_file_outside_tests_is_over_600_lines():
    long_files = {str(p.relative_to(ROOT)): n for p in _python_files() if (n := len(p.read_text().splitlines())) > 600}
    assert long_files == {}


def test_no_function_is_over_80_lines():
    long_functions = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long_functions[f"{path.relative_to(ROOT)}:{node.name}"] = length
    assert long_functions == {}
