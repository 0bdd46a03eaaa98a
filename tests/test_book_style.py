"""The chapters as a course reads them: code that fits the page (88 columns, on the site and in the PDF), and
every chapter shaped as course material (goals, summary, exercises with folded solutions)."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from book_pdf import toc_pages  # noqa: E402  (the book's reading order, as the PDF prints it)

BOOK = ROOT / "book"
WIDTH = 88
KINDS = ("By hand", "With code", "Reading a figure", "Reading a table", "With the app")  # how an exercise opens


@pytest.mark.parametrize("chapter", sorted(BOOK.glob("*.ipynb")), ids=lambda path: path.name)
def test_code_cells_fit_the_page(chapter: Path) -> None:
    cells = json.loads(chapter.read_text())["cells"]
    long = [(index, line) for index, cell in enumerate(cells) if cell["cell_type"] == "code"
            for line in "".join(cell["source"]).splitlines() if len(line) > WIDTH]
    assert not long, f"{chapter.name}: code lines over {WIDTH} columns (ruff format --line-length {WIDTH}): {long}"


def _chapters() -> list[Path]:
    """The notebooks of the table of contents' parts: every page a course reads, not the root intro or the
    Markdown reference pages (notation, API, references)."""
    files = [ROOT / f"{page}.ipynb" for page in toc_pages(ROOT / "_toc.yml")[1:]]
    return [path for path in files if path.exists()]


@pytest.mark.parametrize("chapter", _chapters(), ids=lambda path: path.name)
def test_chapter_is_course_material(chapter: Path) -> None:
    """Goals and assumptions first; a summary; 3-6 exercises of at least two kinds, each with a folded
    solution, at least one solved by code that nbval runs and that ends in an assert."""
    cells = json.loads(chapter.read_text())["cells"]
    text = ["".join(cell["source"]) for cell in cells]
    assert "**After this" in text[0] and "**It assumes**" in text[0], f"{chapter.name}: goals and assumptions"
    if chapter.stem != "guide":  # the guide is itself a summary of the book
        assert any(cell.startswith("## Summary") for cell in text), f"{chapter.name}: no summary"
    markdown = "\n".join(t for t, cell in zip(text, cells) if cell["cell_type"] == "markdown")
    exercises = re.findall(r"```\{exercise\}\n:label: ([\w-]+)", markdown)
    kinds = re.findall(r"```\{exercise\}\n:label: [\w-]+\n\n([^:]*):", markdown)
    assert len(kinds) == len(exercises) and set(kinds) <= set(KINDS), f"{chapter.name}: exercise kinds {kinds}"
    assert len(set(kinds)) >= 2, f"{chapter.name}: exercises of one kind only ({kinds})"
    solved = re.findall(r"````\{solution(?:-start)?\} ([\w-]+)\n:class: dropdown", markdown)
    assert 3 <= len(exercises) <= 6, f"{chapter.name}: {len(exercises)} exercises"
    assert sorted(solved) == sorted(exercises), f"{chapter.name}: exercises {exercises}, folded solutions {solved}"
    inside, by_code = False, []
    for source, cell in zip(text, cells):
        if cell["cell_type"] == "markdown":
            inside = "{solution-start}" in source.rsplit("{solution-end}", 1)[-1]
        elif inside:
            by_code.append("assert " in source)
    assert any(by_code), f"{chapter.name}: no code solution that ends in an assert"


def test_every_glossary_term_is_used_and_every_chapter_links_the_glossary() -> None:
    """The glossary is the book's vocabulary: each term is linked ({term}) from some chapter, and each
    chapter links its terms to it."""
    glossary = (BOOK / "notation.md").read_text().split("```{glossary}", 1)[1].split("```", 1)[0]
    terms = set(re.findall(r"^(\w[\w -]*)$", glossary, re.M))
    linked: dict[str, set[str]] = {}
    for chapter in _chapters():
        text = "".join("".join(cell["source"]) for cell in json.loads(chapter.read_text())["cells"])
        roles = re.findall(r"\{term\}`(?:[^`<]*<)?([^`<>]+)>?`", text)
        linked[chapter.name] = set(roles)
    assert all(linked.values()), [name for name, found in linked.items() if not found]
    unknown = set().union(*linked.values()) - terms
    assert not unknown, f"{{term}} links to words the glossary lacks: {unknown}"
    unused = terms - set().union(*linked.values())
    assert len(terms) >= 10 and not unused, f"glossary terms no chapter links: {unused}"
