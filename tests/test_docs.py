"""The repository's own docs: every "docs/X.md §N" reference resolves to a heading, no reference
points at the specs outside the repo, and the README's package map is the real tree."""

import re
from pathlib import Path

import pytest

from xr0lab.workspace.layout import package_map, readme_block

ROOT = Path(__file__).resolve().parent.parent
REF = re.compile(r"docs/(\w+)\.md §(\d+(?:\.\d+)*)(?:-(\d+(?:\.\d+)*))?")


def _sources():
    for pattern in ("xr0lab/**/*.py", "tests/**/*.py", "notebooks/*.ipynb", "README.md",
                    "docs/*.md"):
        yield from sorted(ROOT.glob(pattern))


def _headings(doc: Path) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^#+ (\d+(?:\.\d+)*)[. ]", doc.read_text(), re.M)}


def test_every_section_reference_resolves():
    refs = [(src, m) for src in _sources() for m in REF.finditer(src.read_text())]
    assert len(refs) > 40, "the code cites docs/ sections throughout"
    missing = []
    for src, m in refs:
        doc = ROOT / "docs" / f"{m.group(1)}.md"
        sections = _headings(doc) if doc.is_file() else set()
        for number in filter(None, (m.group(2), m.group(3))):
            if number not in sections:
                missing.append(f"{src.relative_to(ROOT)}: {m.group(0)}")
    assert not missing, "unresolved references:\n" + "\n".join(missing)


def test_no_reference_to_specs_outside_the_repo():
    stale = re.compile(r"(?<![\w/])spec (section|sections|§) ?\d|benchmark section \d|"
                       r"\.\./shared/spec")
    hits = [f"{src.relative_to(ROOT)}" for src in _sources() if stale.search(src.read_text())]
    assert not hits, f"cite docs/architecture.md or docs/dynreach.md instead: {hits}"


@pytest.mark.parametrize("heading", ["## 3. ", "### 3.1 ", "### 3.3 ", "## 9. ", "## 10. "])
def test_architecture_doc_keeps_the_numbering(heading):
    assert heading in (ROOT / "docs" / "architecture.md").read_text()


def test_readme_layout_is_the_real_tree():
    readme = (ROOT / "README.md").read_text()
    assert readme_block(readme) == package_map(), (
        "README's package map is stale: run `python -m xr0lab layout --write`")
