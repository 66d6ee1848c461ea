"""The relation runner: the declarations beside each query (`sql/<name>/metadata.yaml`) are checked
when the graph loads, a view is not computed when built, and `line_totals` on hand-made tables."""

import duckdb
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
    ("description: d\nstep: rules\nmaterialized: table\ndictionaries: {t: [a.b]}\n",
     "only a parquet relation has dictionaries"),
    ("description: d\nstep: ledger\nmaterialized: parquet\nparquet: f\ndictionaries: {t: [b]}\n",
     "dictionaries: t lists relation.column names"),
    ("description: d\nstep: ledger\nmaterialized: parquet\nparquet: f\ndictionaries: {t: [a.b]}\n",
     "dictionaries: query.sql never casts to t"),
])
def test_a_bad_declaration_names_its_file_and_key(tmp_path, meta, message):
    with pytest.raises(relations.DeclarationError, match=message) as err:
        relations._load(_declare(tmp_path, meta))
    assert "sql/some_relation/metadata.yaml" in str(err.value)


def test_a_dictionary_is_an_enum_of_its_columns_values(tmp_path):
    """`dictionaries`: the type is made, before the query runs, from the sorted distinct values of the
    columns it lists (nulls left out); the query casts to it and the file holds the same strings."""
    folder = _declare(tmp_path, "description: d\nstep: ledger\nmaterialized: parquet\nparquet: f\n"
                                "dictionaries: {kinds: [a.k, b.k]}\n",
                      "select x, k::kinds as k from a\n")
    rel = relations._load(folder)
    assert rel.names() == {"a", "b"}  # the dictionary's relations are built first
    con = duckdb.connect()
    con.execute("create table a as select * from (values (1, 'fee'), (2, 'share'), (3, null)) t(x, k)")
    con.execute("create table b as select * from (values ('bonus'), ('fee')) t(k)")
    assert relations._parquet(con, rel, {}, {"delta_dir": str(tmp_path)}) == 3
    assert con.execute("select enum_range(null::kinds)").fetchall() == [(["bonus", "fee", "share"],)]
    assert con.execute(f"select x, k from '{tmp_path / 'f.parquet'}' order by x").fetchall() == \
        [(1, "fee"), (2, "share"), (3, None)]


def _line_totals(lines_extra: str = "", shares_extra: str = "", refunds_extra: str = "", claws_extra: str = ""):
    """sql/line_totals on hand-made inputs: the few columns it reads of each table it names."""
    con = duckdb.connect()
    relations.install_macros(con)
    con.execute(f"""
        create table credited_days as select * from (values
            (1, 'C1', date '2025-03-05'), (2, 'C2', date '2025-03-05'), (3, 'C2', date '2025-03-05'),
            (4, 'C4', date '2025-03-06')) t(claim_day, customer_id, invoice_date);
        create table charge_lines as select * from (values
            ('L1', 'subscription', 'USD', 2, 10000, 'charge', 'C1', date '2025-03-05'),
            ('L2', 'subscription', 'USD', 2, 5000, 'charge', 'C2', date '2025-03-05'),
            ('L3', 'subscription', 'USD', 2, 3000, 'charge', 'C3', date '2025-03-05'),
            ('P1', 'project', 'EUR', 2, 20000, 'charge', 'X', date '2025-03-05'),
            ('P2', 'project', 'EUR', 2, 1000, 'charge', 'X', date '2025-03-05') {lines_extra}
            ) t(line_id, source, currency, digits, amount_minor, line_type, customer_id, invoice_date);
        create table sub_shares as select * from (values
            ('L1', 'USD', 2, 10000, 2000, 1), ('L2', 'USD', 2, 5000, 1000, 2), ('L2', 'USD', 2, 5000, 1500, 3)
            {shares_extra}) t(line_id, currency, digits, amount_minor, share_minor, claim_day);
        create table project_shares as select * from (values ('P1', 4000), ('P1', 1000)) t(line_id, share_minor);
        create table refunds as select * from (values
            ('R1', 'subscription', 'USD', 2, -2000, 'refund'), ('R2', 'subscription', 'USD', 2, -500, 'chargeback')
            {refunds_extra}) t(line_id, source, currency, digits, amount_minor, line_type);
        create table clawbacks as select * from (values ('R1', -400) {claws_extra}) t(line_id, clawback_minor);
    """)
    relations.build(con, "line_totals", {})
    cols = ["currency", "source", "lines", "billed", "partner_share", "clawed_back", "company_share",
            "unattributed", "lines_failing"]
    return {(r[0], r[1]): dict(zip(cols[2:], r[2:]))
            for r in con.execute(f"select {', '.join(cols)} from line_totals order by all").fetchall()}


def test_line_totals_by_hand():
    """USD: L1 100.00 to one claim (20.00); L2 50.00 to two claims of its customer's day (10.00 +
    15.00); L3 30.00 to none (unattributed); R1 -20.00 refunds L1, clawed back -4.00; R2 -5.00 has
    no clawback (unattributed). EUR: P1 200.00 shared 40.00 + 10.00, P2 10.00 unattributed.
    Company share = billed - shares - clawbacks: USD 155.00 - 45.00 + 4.00 = 114.00."""
    got = _line_totals()
    assert got == {
        ("EUR", "project"): {"lines": 2, "billed": 21000, "partner_share": 5000, "clawed_back": 0,
                             "company_share": 16000, "unattributed": 1000, "lines_failing": 0},
        ("USD", "subscription"): {"lines": 5, "billed": 15500, "partner_share": 4500, "clawed_back": -400,
                                  "company_share": 11400, "unattributed": 2500, "lines_failing": 0},
    }


def test_line_totals_count_lines_that_do_not_reconcile():
    """A charge of 10.00 whose partner gets 15.00, and a refund of -1.00 that claws back -2.00,
    each fail on their own."""
    got = _line_totals(lines_extra=", ('L4', 'subscription', 'USD', 2, 1000, 'charge', 'C4', date '2025-03-06')",
                       shares_extra=", ('L4', 'USD', 2, 1000, 1500, 4)",
                       refunds_extra=", ('R3', 'subscription', 'USD', 2, -100, 'refund')",
                       claws_extra=", ('R3', -200)")
    usd = got[("USD", "subscription")]
    assert usd["lines_failing"] == 2
    assert (usd["lines"], usd["billed"], usd["partner_share"], usd["clawed_back"]) == (7, 16400, 6000, -600)


def test_building_a_view_does_not_compute_it(tmp_path):
    """A view is computed where it is read, not again to count its rows: a view whose rows would raise
    when computed builds without error (and its row count is None), a table of the same query fails."""
    con = duckdb.connect()
    query = "select error('computed') as x\n"
    view = relations._load(_declare(tmp_path, "description: d\nstep: rules\nmaterialized: view\n", query))
    assert relations.build(con, view, {}) is None
    with pytest.raises(duckdb.Error, match="computed"):
        con.execute("select * from some_relation").fetchall()
    (tmp_path / "t").mkdir()
    table = relations._load(_declare(tmp_path / "t", "description: d\nstep: rules\nmaterialized: temp_table\n", query))
    with pytest.raises(relations.RelationFailed):
        relations.build(con, table, {})
