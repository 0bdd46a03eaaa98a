"""The printable book: every page of the built site, in the order of ``_toc.yml``, as one PDF with a
bookmark per chapter. Offline: the pages are printed by the system's chromium through Playwright.

    .venv/bin/jupyter-book build . -W -n --keep-going   # the website first (its cache makes this quick)
    .venv/bin/python tools/book_pdf.py [--solutions] [--out _build/pdf/shapley-cams.pdf]

Exercises keep their solutions folded (a handout); ``--solutions`` prints them unfolded. jupyter-book's
own PDF builders need a LaTeX installation or download a browser, and its single-page HTML builder
cannot render myst-nb's hidden-input cells, so the site's own pages are printed instead.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml
from pypdf import PdfReader, PdfWriter

ROOT = Path(__file__).resolve().parents[1]
# Unfold every sphinx-togglebutton block (folded solutions, hidden inputs) before printing.
UNFOLD = """() => {
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('details').forEach(e => { e.open = true; });
}"""


def toc_pages(toc: Path) -> list[str]:
    """The page files of ``_toc.yml`` in reading order (``root``, then every part's chapters)."""
    spec = yaml.safe_load(toc.read_text())
    pages = [spec["root"]]
    for part in spec.get("parts", [{"chapters": spec.get("chapters", [])}]):
        pages += [chapter["file"] for chapter in part["chapters"]]
    return pages


def print_pages(site: Path, pages: list[str], folder: Path, solutions: bool) -> list[tuple[str, Path]]:
    """Print each built page to its own PDF; returns ``(title, pdf)`` in order."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        sys.exit("chromium is not on the PATH (Debian: apt-get install -y chromium)")
    printed = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        for name in pages:
            html = site / f"{name}.html"
            if not html.is_file():
                sys.exit(f"{html} is missing: build the website first (jupyter-book build .)")
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise",
                                   timeout=60_000)
            page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
            if solutions:
                page.evaluate(UNFOLD)
            target = folder / f"{Path(name).name}.pdf"
            page.pdf(path=str(target), format="A4", print_background=True,
                     margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
            printed.append((page.title().split(" — ")[0].split(" | ")[0], target))
        browser.close()
    return printed


def merge(printed: list[tuple[str, Path]], out: Path) -> int:
    """One PDF with a bookmark at the first page of each chapter; returns the page count."""
    writer = PdfWriter()
    for title, pdf in printed:
        start = len(writer.pages)
        for sheet in PdfReader(pdf).pages:
            writer.add_page(sheet)
        writer.add_outline_item(title=title, page_number=start)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        writer.write(handle)
    return len(writer.pages)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "shapley-cams.pdf")
    parser.add_argument("--solutions", action="store_true", help="print the exercises' solutions unfolded")
    args = parser.parse_args(argv)
    folder = args.out.parent / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    printed = print_pages(args.site, toc_pages(args.toc), folder, args.solutions)
    count = merge(printed, args.out)
    print(f"{args.out}: {len(printed)} chapters, {count} pages")


if __name__ == "__main__":
    main()
