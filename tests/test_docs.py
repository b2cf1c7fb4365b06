"""Every document the code and docs cite is in the repository, and every numbered section they cite exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("ross3d", "cli", "tests", "bench", "docs") for p in sorted((ROOT / folder).rglob("*"))
           if p.suffix in (".py", ".md")] + [ROOT / "README.md", ROOT / "Makefile"]
# reference files that live outside the repository (the team's private notes): never cite them
OUTSIDE = re.compile(r"model-reference|data-and-eval-reference|platform-notes|DESIGN\.md|style\.md")
# "docs/original-model.md 5.3", "docs/original-data.md, A.4", "docs/original-model.md section 9"
CITATION = re.compile(r"docs/([\w.-]+\.md)(?:,?\s+(?:section\s+)?([A-F]\.\d+|\d+(?:\.\d+)?)\b)?")


def citations(text: str):
    """(file name, section or None) for every `docs/<file>.md [section]` reference in text."""
    return [(m.group(1), m.group(2)) for m in CITATION.finditer(text)]


def has_section(doc: Path, section: str) -> bool:
    """Whether doc has a markdown heading that starts with the section id ("## 5.3 ...", "### A.4 ...")."""
    return re.search(rf"^#+ {re.escape(section)}[ .]", doc.read_text(), re.MULTILINE) is not None


def test_citation_parser_on_hand_written_lines():
    line = "as the original (docs/original-model.md 5.3) and docs/original-data.md, A.4; docs/metrics.md"
    assert citations(line) == [("original-model.md", "5.3"), ("original-data.md", "A.4"), ("metrics.md", None)]
    assert citations("docs/original-model.md section 9: the sampler") == [("original-model.md", "9")]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_citation_of_a_document_outside_the_repository(path):
    hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if OUTSIDE.search(line) and path != Path(__file__)]
    assert not hits, "cites a document the repository does not hold:\n" + "\n".join(hits)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_document_and_section_exists(path):
    missing = []
    for name, section in citations(path.read_text()):
        doc = ROOT / "docs" / name
        if not doc.exists():
            missing.append(f"docs/{name}")
        elif section and not has_section(doc, section):
            missing.append(f"docs/{name} section {section}")
    assert not missing, f"{path.relative_to(ROOT)} cites what docs/ does not hold: {missing}"
