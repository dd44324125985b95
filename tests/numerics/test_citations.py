"""Every document the numerics and nn code and docs cite is in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITERS = [*ROOT.glob("src/opendojo/numerics/*.py"), *ROOT.glob("src/opendojo/nn/*.py"),
          ROOT / "src/opendojo/numerics/_ckernel.c", ROOT / "docs/nn.md", ROOT / "docs/numerics.md",
          ROOT / "docs/cfloat-spec.md"]
CITATION = re.compile(r"(?<![\w/.])((?:docs|specs|benchmarks|tests|src)/[\w./-]+\.(?:md|py|c|toml))")


def test_cited_paths_resolve_inside_the_repository():
    missing = []
    for path in CITERS:
        text = path.read_text()
        assert "/work/" not in text, f"{path.name} cites a path outside the repository"
        for cited in CITATION.findall(text):
            if not (ROOT / cited).exists() and not (path.parent / cited).exists():
                missing.append(f"{path.relative_to(ROOT)} -> {cited}")
    assert not missing, "cited but not in the repository: " + "; ".join(missing)


def test_markdown_links_of_the_docs_resolve():
    for name in ("nn.md", "numerics.md", "cfloat-spec.md"):
        for target in re.findall(r"\]\(([\w./-]+\.md)\)", (ROOT / "docs" / name).read_text()):
            assert (ROOT / "docs" / target).exists(), f"docs/{name} links {target}"
