"""Item 8: the WHERE clause runs on a DuckDB connection that can read the index and nothing else; a
clause that reads files, calls table functions or breaks out of its parentheses is refused with one
line naming it, in the library and in `dojo data query` (exit 2)."""

from __future__ import annotations

import pytest

from opendojo.cli import main
from opendojo.data import query, synth
from opendojo.data.ingest import ingest
from opendojo.data.safesql import locked_connection
from opendojo.errors import UsageError


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    src = synth(tmp_path_factory.mktemp("src"), clips=2, cameras=1, frames=16, size=(32, 32), seed=8,
                keyint=16, progress=False)
    out = tmp_path_factory.mktemp("ds") / "ds"
    assert ingest([src], out, clip_frames=16, progress=False).ok
    return out


@pytest.mark.parametrize(("where", "message"), [
    ("(SELECT length(content) FROM read_text('/etc/passwd')) > 0", "SELECT is refused"),
    ("false) OR (true", "a ')' closes more than the clause opened"),
    ("true; DROP TABLE x", "';' is refused"),
    ("true -- )", "comments are refused"),
    ("(FROM range(3)) IS NOT NULL", "FROM is refused"),
    ("((true)", "unbalanced parentheses"),
    ("foo(1)", "not a valid boolean expression over the index columns: Catalog Error: Scalar Function"),
    ("camera::INTEGER > 0", "Conversion Error"),
    ("read_text('/etc/passwd') IS NOT NULL", "where_sql="),
])
def test_unsafe_or_bad_clauses_are_refused_in_one_line(ds, where, message):
    with pytest.raises(UsageError, match=None) as e:
        query(ds, where)
    text = str(e.value)
    assert message in text and "\n" not in text and text.startswith("where_sql=")


def test_the_connection_reads_no_file_and_cannot_be_unlocked():
    cur = locked_connection().cursor()
    with pytest.raises(Exception, match="disabled by configuration"):
        cur.sql("SELECT * FROM read_text('/etc/passwd')").fetchall()
    with pytest.raises(Exception, match="locked"):
        cur.execute("SET enable_external_access = true")
    names = "'threads', 'autoload_known_extensions', 'autoinstall_known_extensions', 'lock_configuration'"
    settings = dict(cur.sql(f"SELECT name, value FROM duckdb_settings() WHERE name IN ({names})").fetchall())
    assert settings == {"threads": "2", "autoload_known_extensions": "false",
                        "autoinstall_known_extensions": "false", "lock_configuration": "true"}


def test_cli_query_errors_are_one_line_with_exit_2(ds, capsys):
    assert main(["data", "query", str(ds), "foo(1)"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dojo data query: error: where_sql='foo(1)'") and "\n" not in err
    assert main(["data", "query", str(ds), "false) OR (true"]) == 2
    assert "closes more than" in capsys.readouterr().err
    assert main(["data", "query", str(ds), "start_frame = 0"]) == 0
