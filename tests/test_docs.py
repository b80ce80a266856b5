"""The docs describe the code that exists: every contract table and column is in the contract doc."""

import re

from conftest import REPO_ROOT

from core.contract import CONTRACT_VERSION, ENGAGEMENT_ACTIONS, RAW_TABLES

CONTRACT_DOC = (REPO_ROOT / "docs" / "data_contract.md").read_text()


def test_contract_doc_has_the_code_version():
    assert f"**Version {CONTRACT_VERSION}**" in CONTRACT_DOC


def test_contract_doc_lists_every_table_and_column_with_its_type_and_nullability():
    for table in RAW_TABLES:
        section = CONTRACT_DOC.split(f"### {table.name} ")[1].split("\n### ")[0]
        for column in table.columns:
            row = re.search(rf"^\| {column.name} \| (\w+) \| (yes|no) \|", section, re.MULTILINE)
            assert row, f"{table.name}.{column.name} missing from docs/data_contract.md"
            assert row.group(1) == column.dtype, f"{table.name}.{column.name} type"
            assert row.group(2) == ("yes" if column.nullable else "no"), f"{table.name}.{column.name} null"


def test_contract_doc_lists_every_action():
    for action in ENGAGEMENT_ACTIONS:
        assert f"`{action}`" in CONTRACT_DOC


def test_serving_doc_names_every_endpoint_filter_event_type_and_key_space():
    from core.filters import REQUEST_FILTERS
    from core.redis_layout import KEY_SPACES
    from core.settings import load_settings
    from serving.api import create_app
    from serving.events import ENGAGEMENT_EVENTS, USER_EVENTS

    serving_doc = (REPO_ROOT / "docs" / "serving.md").read_text()
    layout_doc = (REPO_ROOT / "docs" / "redis_layout.md").read_text()
    for path in create_app(load_settings(env="development")).openapi()["paths"]:
        assert f"`GET {path}" in serving_doc or f"`POST {path}" in serving_doc, path
    for name in (*REQUEST_FILTERS, *ENGAGEMENT_EVENTS, *USER_EVENTS, "tweet", "delete_tweet"):
        assert f"`{name}`" in serving_doc, name
    for space in KEY_SPACES:
        assert f"| {space.name} | `hf:v<N>:{{{space.tag}" in layout_doc, space.name
