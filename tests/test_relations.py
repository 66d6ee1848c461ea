"""The declarations beside each query (`sql/<name>/metadata.yaml`) are checked when the graph loads."""

import pytest

from pipelines.rules import relations


def _declare(tmp_path, meta: str, query: str = "select 1 as x\n"):
    folder = tmp_path / "some_relation"
    folder.mkdir()
    (folder / "metadata.yaml").write_text(meta)
    (folder / "query.sql").write_text(query)
    return folder


def test_every_declared_relation_loads():
    assert "ledger_billing_lines" in relations.graph().relations


@pytest.mark.parametrize("meta, message", [
    ("description: d\nstep: rules\nmaterialized: table\ncolour: red\n", "unknown key 'colour'"),
    ("description: d\nstep: rules\nmaterialized: table\ndictionary_columns: [x]\n",
     "only a parquet relation has dictionary_columns"),
])
def test_a_bad_declaration_names_its_file_and_key(tmp_path, meta, message):
    with pytest.raises(relations.DeclarationError, match=message) as err:
        relations._load(_declare(tmp_path, meta))
    assert "sql/some_relation/metadata.yaml" in str(err.value)
