"""A report of one scored image showed a "Worst 0 by mIoU" heading above nothing, under a note
saying "Worst first" (helper E's note): the note now says why the set is empty, as the random
set's already did."""

import pandas as pd

from fastseg.inference.ranking import rank
from fastseg.inference.report import example_sets


def test_an_empty_worst_set_says_why():
    chosen = example_sets(rank(pd.DataFrame({"id": ["a"], "pixel_accuracy": [0.9], "miou": [0.5],
                                             "loss": [1.0]}), "miou"), "miou", seed=0)  # fmt: skip
    title, note, rows = chosen["worst"]
    assert (title, len(rows)) == ("Worst 0 by mIoU", 0)
    assert note == "Every scored image is already shown as best (no image is both)."
    assert chosen["random"][1] == "Every image is already shown as best or worst."


def test_a_worst_set_with_images_keeps_its_note():
    frame = pd.DataFrame({"id": list("abc"), "pixel_accuracy": [0.9, 0.8, 0.7], "miou": [0.5, 0.4, 0.3],
                          "loss": [1.0, 2.0, 3.0]})  # fmt: skip
    title, note, rows = example_sets(rank(frame, "miou"), "miou", seed=0)["worst"]
    assert len(rows) >= 1 and note.endswith("Worst first; no image is both best and worst.")
