"""The docs describe the code that exists: every contract table and column is in the contract doc."""

import re

from conftest import REPO_ROOT
from jobs.contract import CONTRACT_VERSION, ENGAGEMENT_ACTIONS, RAW_TABLES

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
