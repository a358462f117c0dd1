"""bdlib.course.viz.table: the Markdown tables the lessons print."""

from __future__ import annotations

from markdown_it import MarkdownIt

from bdlib.course.viz import table


def rendered_cells(markdown: str) -> list[list[str]]:
    """The table's rows of cell texts, as a GFM Markdown renderer reads them."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    rows, row = [], None
    for i, token in enumerate(tokens):
        if token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            row.append(tokens[i + 1].content if tokens[i + 1].type == "inline" else "")
        elif token.type == "tr_close":
            rows.append(row)
    return rows


def test_a_pipe_inside_a_cell_stays_inside_the_cell() -> None:
    markdown = table([{"chain": "'100' DDPM", "largest |x|": 1.5, "note": "a|b"}]).data
    assert rendered_cells(markdown) == [["chain", "largest |x|", "note"], ["'100' DDPM", "1.500", "a|b"]]


def test_numbers_are_rounded_and_large_or_tiny_ones_in_g_format() -> None:
    markdown = table([{"a": 0.12345, "b": 12345.0, "c": 0.0001234, "d": 3, "e": None}]).data
    assert rendered_cells(markdown)[1] == ["0.123", "1.23e+04", "0.000123", "3", "None"]


def test_a_large_picture_is_shrunk_for_its_panel():
    """A 12-megapixel result drawn in a 140-px panel holds at most 4 image pixels per screen pixel (560 px), so a
    figure of a photo costs megabytes, not gigabytes (issue 23, item 5)."""
    import matplotlib.pyplot as plt
    import torch

    from bdlib.course.viz import show_grid

    fig = show_grid([[torch.zeros(3, 3000, 4000), torch.ones(1, 3000, 4000)]], panel_inches=1.4)
    try:
        shapes = [ax.images[0].get_array().shape[:2] for ax in fig.axes]
        assert shapes == [(420, 560), (420, 560)]
    finally:
        plt.close(fig)
