"""The chapters' code as readers see it: no line runs past the page (88 columns), on the site or in the PDF."""
import json
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
WIDTH = 88


@pytest.mark.parametrize("chapter", sorted(BOOK.glob("*.ipynb")), ids=lambda path: path.name)
def test_code_cells_fit_the_page(chapter: Path) -> None:
    cells = json.loads(chapter.read_text())["cells"]
    long = [(index, line) for index, cell in enumerate(cells) if cell["cell_type"] == "code"
            for line in "".join(cell["source"]).splitlines() if len(line) > WIDTH]
    assert not long, f"{chapter.name}: code lines over {WIDTH} columns (ruff format --line-length {WIDTH}): {long}"
