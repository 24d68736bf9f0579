"""Session 36: one rule for cutting a name or another program's words inside an error line. About
twenty lines cut by hand (`[:200]`, `[:80]`), most without a mark, so a cut name read as the
whole name; archive and fetch each had a helper of their own."""

from hypothesis import given
from hypothesis import strategies as st

from fastseg.errors import clipped, quoted


@given(st.text(max_size=400), st.integers(1, 300))
def test_clipped_keeps_what_fits_and_marks_a_cut(text, limit):
    line = clipped(text, limit)
    if len(text) <= limit:
        assert line == text
    else:
        assert line == text[:limit] + "..." and len(line) == limit + 3


@given(st.text(max_size=400), st.integers(1, 300))
def test_quoted_puts_the_mark_outside_the_quotes(text, limit):
    line = quoted(text, limit)
    if len(text) <= limit:
        assert line == repr(text)
    else:
        assert line == repr(text[:limit]) + "..."


def test_a_name_ending_in_dots_is_not_taken_for_a_cut_one():
    assert quoted("wait...", 10) == "'wait...'" and quoted("x" * 12, 10) == "'xxxxxxxxxx'..."


def test_clipped_middle_keeps_the_head_and_the_tail():
    from fastseg.errors import clipped_middle

    assert clipped_middle("short") == "short"
    text = "/head/" + "m" * 300 + "/tail.png"
    cut = clipped_middle(text, 120)
    assert len(cut) == 120 and cut.startswith("/head/") and cut.endswith("/tail.png") and "..." in cut
