"""The portal's look where a person sees it: the database manager with a name of 63 characters
(the longest a host name allows) and its test copy, and the security page, at 1280 and 390 px
wide (a desktop and a phone). Boxes are measured in Chromium; screenshots are saved for a
person to look at.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Locator, expect

from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.operations.tasks import run_operation
from tests.browser import (
    SCREENS,
    WIDTHS,
    Box,
    Console,
    assert_no_sideways_scroll,
    new_page,
    show,
    sign_in,
)
from tests.conftest import make_account

pytestmark = pytest.mark.slow

OWNER = "owner@example.com"
NAME = "northwind-trading-international-warehouse-logistics-and-finance"
COPY = "northwind-trading-international-warehouse-logistics-staging-eur"


def box(locator: Locator) -> Box:
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not displayed"
    return found


def assert_inside(inner: Box, outer: Box, what: str) -> None:
    # Half a pixel for the rounding of fractional layouts.
    assert inner["x"] >= outer["x"] - 0.5, f"{what} sticks out on the left: {inner} {outer}"
    right, outer_right = inner["x"] + inner["width"], outer["x"] + outer["width"]
    assert right <= outer_right + 0.5, f"{what} sticks out on the right: {inner} {outer}"


def lines_end_only_where_full(link: Locator) -> list[str]:
    """Where the text of `link` breaks across lines: the gap left at the end of each broken
    line, against the width of a character. A break at a hyphen leaves a gap of many."""
    return link.evaluate(
        """link => {
            const text = link.firstChild, range = document.createRange();
            const right = link.closest("p").getBoundingClientRect().right;
            const rects = [...text.data].map((_, i) => {
                range.setStart(text, i); range.setEnd(text, i + 1);
                return range.getBoundingClientRect();
            });
            const gaps = [];
            for (let i = 0; i + 1 < rects.length; i++) {
                if (rects[i + 1].top > rects[i].top + 1) {
                    const gap = right - rects[i].right;
                    if (gap > 2 * rects[i].width) {
                        gaps.push(`after "${text.data.slice(0, i + 1)}": ${gap}px`);
                    }
                }
            }
            return gaps;
        }"""
    )


def test_the_manager_holds_a_63_character_name_on_a_desktop_and_a_phone(
    portal: str, browser: Browser
) -> None:
    assert len(NAME) == len(COPY) == 63
    owner = make_account(OWNER)
    database = lifecycle.create(NAME, by=owner)
    duplicate = lifecycle.start_duplicate(database, COPY, for_testing=True, by=owner)
    run_operation.call(duplicate.pk)
    copy = Database.objects.get(name=COPY)
    assert copy.is_test_copy and copy.expires_at is not None
    SCREENS.mkdir(exist_ok=True)
    console = Console()
    page = new_page(browser, console)
    sign_in(page, portal, OWNER)
    expect(page).to_have_url(f"{portal}/databases/")

    for width in WIDTHS:
        viewport = show(page, width, f"{portal}/databases/")
        card = box(page.locator("section.card", has=page.locator("table.databases")))
        assert_inside(card, viewport, "the card")
        assert_inside(box(page.locator("table.databases")), card, "the table")
        buttons = page.locator("table.databases button, table.databases summary")
        expect(buttons).to_have_count(4)  # Connect and Manage, twice
        for i in range(4):
            assert_inside(box(buttons.nth(i)), card, f"button {i} at {width} px")
        for name in (NAME, COPY):
            row = page.locator(f"#db-{name}")
            # The full name on hover, and the address.
            expect(row.locator("strong")).to_have_attribute("title", name)
            assert_inside(box(row.locator("strong")), card, f"the name at {width} px")
            assert_inside(box(row.locator("td.name a")), card, f"the address at {width} px")
        badge = page.locator(f"#db-{COPY} .badge")
        expect(badge).to_have_text(f"Test copy until {copy.expires_at:%Y-%m-%d}")
        line = float(badge.evaluate("b => parseFloat(getComputedStyle(b).lineHeight)"))
        assert box(badge)["height"] < 1.5 * line, f"the badge wraps at {width} px"
        assert_no_sideways_scroll(page)
        page.screenshot(path=str(SCREENS / f"manager-{width}.png"), full_page=True)

        # The duplicate's progress page, done: the copy's address breaks only where a line
        # is full (on the phone too), never at one of its hyphens.
        show(page, width, f"{portal}/operations/{duplicate.pk}/")
        link = page.locator("#progress .status a")
        expect(link).to_have_text(copy.url)
        assert lines_end_only_where_full(link) == [], f"the address breaks early at {width} px"
        assert_inside(box(link), box(page.locator(".card")), f"the address at {width} px")
        assert_no_sideways_scroll(page)
        page.screenshot(path=str(SCREENS / f"operation-{width}.png"), full_page=True)

    # The Invite card is as wide as the cards above it.
    show(page, 1280, f"{portal}/databases/{NAME}/users/")
    cards = page.locator("main section.card")
    expect(cards).to_have_count(2)
    assert box(page.locator("#invite"))["width"] == box(cards.first)["width"]
    assert not console.csp_violations, console.csp_violations


# The WCAG 2 contrast ratio of two colours given as CSS "rgb(r, g, b)".
CONTRAST = """([a, b]) => {
    const luminance = rgb => {
        const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map(c => {
            c = c / 255;
            return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const [l1, l2] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (l1 + 0.05) / (l2 + 0.05);
}"""


def test_the_security_page_is_readable_on_a_desktop_and_a_phone(
    portal: str, browser: Browser
) -> None:
    make_account(OWNER)
    SCREENS.mkdir(exist_ok=True)
    console = Console()
    page = new_page(browser, console)
    sign_in(page, portal, OWNER)
    expect(page).to_have_url(f"{portal}/databases/")

    for width in WIDTHS:
        viewport = show(page, width, f"{portal}/account/security/")
        expect(page.get_by_role("heading", name="Connection & security")).to_be_visible()
        # Every danger button, "Delete my account" among them: white on red, readable.
        delete = page.get_by_role("link", name="Delete my account")
        expect(delete).to_be_visible()
        dangers = page.locator("a.button.danger, button.danger:not(.link)")
        expect(dangers).to_have_count(2)  # and "Log out from all devices"
        for i in range(2):
            danger = dangers.nth(i)
            colours = danger.evaluate(
                "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]"
            )
            ratio = page.evaluate(CONTRAST, colours)
            assert ratio >= 4.5, f"{danger.inner_text()}: {colours} has a contrast of {ratio:.2f}"
            assert_inside(box(danger), viewport, danger.inner_text())
        assert_no_sideways_scroll(page)
        page.screenshot(path=str(SCREENS / f"security-{width}.png"), full_page=True)
    assert not console.csp_violations, console.csp_violations
