"""A screenshot of a page in headless Chromium (Playwright for Python, the system's chromium), with the network
blocked: what ``make docs`` can call to show the page in the docs.

    python -m sami.study.screenshot runs/quickstart/report/index.html docs/page.png [--width 1400] [--height 1800]
"""

from __future__ import annotations

import argparse
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# Every element that stays in place while the page scrolls is laid out in the flow instead.
UNSTICK = """for (const el of document.querySelectorAll("*")) {
  const position = getComputedStyle(el).position;
  if (position === "sticky" || position === "fixed") el.style.position = "static";
}"""


def block_network(route) -> None:
    """Let ``file:`` and ``data:`` URLs through and abort every other request."""
    if route.request.url.startswith(("file:", "data:")):
        route.continue_()
    else:
        route.abort()


def screenshot(
    page_path: str | Path,
    out: str | Path,
    *,
    width: int = 1400,
    height: int = 1800,
    full_page: bool = False,
    selector: str | None = None,
) -> Path:
    """Open ``page_path`` offline and save a PNG of the top ``height`` pixels (or the whole page, or the
    element ``selector``) to ``out``. ``out`` is replaced only by a whole picture: a page without the element
    (``InputMissing``, said at once instead of after the browser's wait) or a browser that fails leaves it as it
    was."""
    from playwright.sync_api import sync_playwright

    from sami.core.errors import InputMissing

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route("**/*", block_network)
            page.goto(Path(page_path).resolve().as_uri())
            target = page.locator(selector).first if selector else page
            if selector:
                if target.count() == 0:
                    raise InputMissing(f"{page_path}: no element matches {selector!r}")
                page.evaluate(UNSTICK)  # a sticky bar (the filters) would cover the element's top once scrolled to
                target.scroll_into_view_if_needed()
                target.screenshot(path=str(tmp))
            else:
                page.screenshot(path=str(tmp), full_page=full_page)
            tmp.replace(out)
        finally:
            browser.close()
            tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1800)
    parser.add_argument("--selector", help="CSS selector of the element to shoot instead of the page's top")
    args = parser.parse_args(argv)
    print(screenshot(args.page, args.out, width=args.width, height=args.height, selector=args.selector))


if __name__ == "__main__":
    main()
