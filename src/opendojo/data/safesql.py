"""The clip index's SQL, safe to take from strangers: one boolean WHERE expression on a locked DuckDB.

The security model (docs/data.md §4): our code lists the index files (never a glob) and the DuckDB
connection that evaluates a caller's WHERE clause may read exactly those and nothing else:

* ``allowed_paths`` = the listed index files (local datasets), and ``enable_external_access = false``:
  no other file, URL or database can be opened from SQL (``read_text``, ``read_parquet`` of anything
  else, ``ATTACH``, ``COPY`` all fail). A non-local index is read by pyarrow through fsspec and handed
  over as an in-memory Arrow table, with no file allowed at all;
* ``autoinstall_known_extensions`` and ``autoload_known_extensions`` off: SQL cannot pull in code;
* ``memory_limit`` and ``threads`` bound what one query takes, and a timer interrupts it after
  ``TIMEOUT_S`` seconds;
* ``lock_configuration = true``: the SQL cannot switch any of this back.

The clause itself must be one boolean expression: its tokens are checked before DuckDB sees it. No
``;``, no comments, parentheses that never close more than they opened (``false) OR (true`` cannot
break out), and no ``SELECT``/``FROM``/``WITH`` (no subqueries, so no table functions). DuckDB then
parses it as a single expression. Every error comes back as one line naming the clause.
"""

from __future__ import annotations

import logging
import os
import threading

import pyarrow as pa

from opendojo.errors import UsageError

log = logging.getLogger(__name__)

MEMORY_LIMIT = "1GB"
THREADS = 2
TIMEOUT_S = 30.0
# Keywords that open a query inside an expression (a subquery can name table functions).
_REFUSED_KEYWORDS = frozenset({"SELECT", "FROM", "WITH", "TABLE", "PIVOT", "UNPIVOT", "SUMMARIZE", "DESCRIBE",
                               "SHOW", "VALUES", "RECURSIVE"})
_LOCKED: dict[tuple[int, tuple[str, ...]], object] = {}
_MAX_CONNECTIONS = 8  # per process; each is a few MB


def locked_connection(files: tuple[str, ...] = ()):
    """A locked DuckDB connection (settings in the module docstring) that may read exactly ``files``
    (absolute local paths; ``allowed_paths``) and nothing else. Opening one costs ~30-70 ms, more
    than a typical query, so the last few are kept per process and file set; callers use a cursor."""
    import duckdb

    key = (os.getpid(), tuple(files))
    con = _LOCKED.pop(key, None)
    if con is None:
        con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                     "autoload_known_extensions": False})
        if files:
            con.execute("SET allowed_paths = ?", [list(files)])
        for setting in ("enable_external_access = false", f"memory_limit = '{MEMORY_LIMIT}'",
                        f"threads = {THREADS}", "lock_configuration = true"):  # the lock comes last
            con.execute(f"SET {setting}")
        while len(_LOCKED) >= _MAX_CONNECTIONS:
            _LOCKED.pop(next(iter(_LOCKED))).close()
    _LOCKED[key] = con  # most recently used last
    return con


def _tokens(where: str) -> list[tuple[str, str]]:
    """``(text, kind)`` of each token of ``where`` (kinds: identifier, keyword, operator, ...)."""
    import duckdb

    toks = duckdb.tokenize(where)
    ends = [p for p, _ in toks[1:]] + [len(where)]
    return [(where[p:e].strip(), t.name) for (p, t), e in zip(toks, ends, strict=True)]


def check_where(where: object, argument: str = "where_sql") -> list[str]:
    """Refuse anything but one boolean expression (``UsageError`` naming ``argument``); returns the
    identifiers it names (lower case), so the caller can read just those columns."""
    if not isinstance(where, str) or not where.strip():
        raise UsageError(f"{argument}: got {where!r}; allowed: one SQL boolean expression")

    def refuse(why: str) -> UsageError:
        return UsageError(f"{argument}={where!r}: {why}; allowed: one boolean expression over the "
                          "index columns")

    if ";" in where:
        raise refuse("';' is refused")
    depth, names = 0, []
    for text, kind in _tokens(where):
        if kind == "comment":
            raise refuse("comments are refused")
        if kind == "keyword" and text.upper() in _REFUSED_KEYWORDS:
            raise refuse(f"{text.upper()} is refused (no subqueries or table functions)")
        if kind == "identifier":
            names.append(text.strip('"').lower())
        if kind == "operator":
            for ch in text:
                depth += (ch == "(") - (ch == ")")
                if depth < 0:
                    raise refuse("a ')' closes more than the clause opened")
    if depth:
        raise refuse("unbalanced parentheses")
    return names


def _one_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else e.__class__.__name__


def run_sql(source: pa.Table | list[str], build, what: str, index_name: str = "index") -> pa.Table:
    """``build(relation)`` over ``source`` (an Arrow table, or local Parquet files read by DuckDB itself,
    which is faster) on a locked connection, interrupted after ``TIMEOUT_S``. Errors of the clause
    become a one-line ``UsageError`` naming ``what``; an unreadable index a ``ValueError`` naming it."""
    import duckdb

    files = () if isinstance(source, pa.Table) else tuple(source)
    cur = locked_connection(files).cursor()
    timer = threading.Timer(TIMEOUT_S, cur.interrupt)
    timer.start()
    try:
        rel = cur.from_arrow(source) if not files else cur.read_parquet(list(files), union_by_name=True)
        return build(rel).to_arrow_table()
    except duckdb.InterruptException as e:
        raise RuntimeError(f"{what}: stopped after the {TIMEOUT_S:g} s query timeout") from e
    except (duckdb.IOException, duckdb.InvalidInputException) as e:
        raise ValueError(f"{index_name} does not parse: {_one_line(e)}") from e
    except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as e:
        raise UsageError(f"{what}: not a valid boolean expression over the index columns: "
                         f"{_one_line(e)}") from e
    except duckdb.Error as e:
        raise UsageError(f"{what}: {_one_line(e)}") from e
    finally:
        timer.cancel()
        cur.close()
