"""The small text measures behind consensus, cleaning and prompt windows."""

from __future__ import annotations

import pytest

from creative_studio.core.text import (
    clean_reply,
    content_words,
    extract_json_object,
    novelty,
    parse_vote,
    similarity,
    without_loops,
)
from creative_studio.graph.prompting import window_start

NAMES = ["Luna", "Frame", "Saga", "Pixel", "Lens"]


def test_content_words_drop_filler_and_fold_possessives():
    assert content_words("The lighthouse's light, and we think it's great!") == {
        "lighthouse",
        "light",
    }


def test_novelty_and_similarity():
    assert novelty("neon rain reflections", ["neon", "rain"]) == pytest.approx(1 / 3)
    assert novelty("", []) == 0.0
    assert similarity("magenta neon over wet asphalt", "wet asphalt under magenta neon") == 1.0
    assert similarity("magenta neon", "a quiet forest") == 0.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Luna: Soft pink light.", "Soft pink light."),
        ("**Luna (style):** Soft pink light.", "Soft pink light."),
        ("Soft pink light.\nFrame: I disagree.", "Soft pink light."),
        ("Soft pink light.\nPerson: thanks", "Soft pink light."),
        ("Note: keep it soft.", "Note: keep it soft."),  # not a member's name: kept
        # "Lens" and "Frame" are also the craft's words: a composition turn's own lines.
        (
            "Wide shot.\nLens: 35mm, f/2.8.\nFrame: tight.",
            "Wide shot.\nLens: 35mm, f/2.8.\nFrame: tight.",
        ),
        ("Wide shot.\nLens (critic): The plan is fine.", "Wide shot."),
        ("Wide shot.\n**Lens:** I think it is fine.", "Wide shot."),
        ("Wide shot.\nLens: a long lens.\nSaga: The fox waits.", "Wide shot.\nLens: a long lens."),
    ],
)
def test_clean_reply(raw, expected):
    assert clean_reply(raw, NAMES, 700) == expected


def test_clean_reply_cuts_long_text():
    assert clean_reply("word " * 500, NAMES, 100).endswith("…")
    assert len(clean_reply("word " * 500, NAMES, 100)) <= 100


@pytest.mark.parametrize(
    ("text", "ready"),
    [
        ("READY - palette settled.", True),
        ("Yes, let's go.", True),
        ("NOT YET - the courier is missing.", False),
        ("Ready? Not yet, we need the light.", False),
        ("Hmm, maybe the palette could be warmer.", False),  # no clear yes counts as no
    ],
)
def test_parse_vote(text, ready):
    assert parse_vote(text)[0] is ready


def test_objection_reason_is_kept():
    assert parse_vote("NOT YET - the courier is missing.") == (False, "the courier is missing.")


def test_extract_json_object_from_prose_and_fences():
    assert extract_json_object('Sure!\n```json\n{"a": {"b": 1}}\n```') == {"a": {"b": 1}}
    assert extract_json_object('{broken} then {"ok": true}') == {"ok": True}
    with pytest.raises(ValueError):
        extract_json_object("no json here")
    with pytest.raises(ValueError):
        extract_json_object("[1, 2]")


def test_transcript_window_slides_in_chunks():
    assert [window_start(n, 12) for n in (5, 12, 13, 16, 17, 20, 21)] == [0, 0, 4, 4, 8, 8, 12]
    shown = [n - window_start(n, 12) for n in range(1, 80)]
    assert min(shown[12:]) >= 8 and max(shown) <= 12


def test_a_turn_that_falls_into_a_loop_ends_before_its_first_repeat():
    """As the embedded Saga wrote it, until its tokens ran out."""
    looping = (
        "For the feeling, the viewer should feel relief and joy as the fox crosses the river. "
        "The sense of calm and peace, the feeling of contentment and accomplishment, the "
        "feeling of pleasure and happiness, the feeling of contentment and accomplishment, "
        "the feeling of pleasure and happiness, the feeling of"
    )
    assert without_loops(looping) == (
        "For the feeling, the viewer should feel relief and joy as the fox crosses the river. "
        "The sense of calm and peace, the feeling of contentment and accomplishment, the "
        "feeling of pleasure and happiness."
    )
    # A cut that leaves only a sentence's opening ends at the sentence before (seen:
    # "... a sense of excitement. For the symbolism." on the embedded Saga).
    assert (
        without_loops(
            "For the emotion, I should feel a sense of wonder and a sense of curiosity. For the "
            "symbolism, I should feel a sense of wonder and a sense of curiosity. For what"
        )
        == "For the emotion, I should feel a sense of wonder and a sense of curiosity."
    )
    # A sentence said twice is a loop too; short refrains and lists are not.
    assert without_loops("Keep the fox small. Keep the fox small. Keep") == "Keep the fox small."
    for fine in (
        "Red, red, red: the lantern, the scarf, the sun.",
        "Yes, yes. The river is wide, the river is cold, the ice is thin.",
        "Low and wide. Low and wide again, but warmer.",
    ):
        assert without_loops(fine) == fine


def test_a_shortened_key_point_ends_at_a_whole_word():
    from creative_studio.core.text import first_sentence

    long = "For the light " + "and the soft flowing splash " * 10 + "on the ground."
    point = first_sentence(long, limit=60)
    assert point.endswith("…") and len(point) <= 60
    assert long.startswith(point[:-1]) and long[len(point) - 1] == " "


def test_a_turn_over_the_length_limit_ends_at_its_last_whole_sentence():
    """Seen: Frame's list cut at 700 characters, "... to separate the cat's body from…"."""
    from creative_studio.core.text import clean_reply

    turn = (
        "The camera: a wide-angle lens. The framing: a shallow frame on the ears. "
        "The leading lines: a thin line to separate the body from the sill and the"
    )
    assert clean_reply(turn, [], 120) == (
        "The camera: a wide-angle lens. The framing: a shallow frame on the ears."
    )
    assert clean_reply("soft " * 60, [], 50).endswith("soft soft…")  # no sentence: a word's end
    # A full stop the limit cuts out of a number ("f/2.8" to "f/2.") ends no sentence.
    assert clean_reply("Shoot at f/2.8 with soft light", [], 13) == "Shoot at…"
