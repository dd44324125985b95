"""The house rules a reviewer would otherwise check by hand: short functions, citations that resolve."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "opendojo"
MAX_FUNCTION_LINES = 60

# A cited file: a repository folder, then a path ending in a file extension the house uses.
_CITATION = re.compile(r"(?<![\w/.-])((?:\.\./)*(?:docs|benchmarks|configs|tests|src|specs|shared)/"
                       r"[\w./-]*?\.(?:md|py|toml|png|csv|c|json|ini|html))\b")
_CITING_FILES = ("*.py", "*.md", "*.toml", "*.c", "Makefile")


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_in_src_is_longer_than_the_limit():
    too_long = []
    for path in sorted(SRC.rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text(), str(path))):
            start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
            lines = fn.end_lineno - start + 1
            if lines > MAX_FUNCTION_LINES:
                too_long.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} ({lines} lines)")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)


def _citing_files():
    yield ROOT / "README.md"
    yield ROOT / "Makefile"
    for folder in ("src", "docs", "benchmarks", "configs", "tests"):
        for pattern in _CITING_FILES:
            yield from (ROOT / folder).rglob(pattern)


def _resolves(cited: str, citing: Path) -> bool:
    if re.search(r"/[A-Z][A-Z_]+\.", cited):  # a placeholder such as specs/NAME.toml
        return True
    if cited.startswith("benchmarks/out/"):  # what a benchmark writes when it runs (git-ignored)
        return True
    return any((base / cited).exists() for base in (ROOT, citing.parent, SRC / "hw"))


def test_every_cited_path_resolves_inside_the_repository():
    broken = []
    for path in sorted(set(_citing_files())):
        if "__pycache__" in path.parts or ".venv" in path.parts:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for cited in _CITATION.findall(line):
                outside = cited.startswith("../") or cited.startswith("shared/")
                if outside or not _resolves(cited, path):
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {cited}")
    assert not broken, "citations that do not resolve inside the repository:\n" + "\n".join(broken)


def test_markdown_links_between_documents_resolve():
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([\w./-]+\.(?:md|png|csv|py|toml))(?:#[\w-]*)?\)", doc.read_text()):
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, "links to files that are not in the repository:\n" + "\n".join(broken)
