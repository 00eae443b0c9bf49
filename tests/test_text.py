from __future__ import annotations

import pytest

from hubroute.data.text import card_text, clean_prompt, split_model_name


def test_markers_are_stripped_and_input_kept():
    raw = "###Instruction: Translate this to English.\n###Input: Hola, ¿cómo estás?"
    assert clean_prompt(raw) == "Translate this to English.\nHola, ¿cómo estás?"
    assert clean_prompt("  ###Instruction:   Find   cars ") == "Find cars"
    assert clean_prompt("plain question?") == "plain question?"
    assert clean_prompt(raw, markers="keep") == raw


def test_unknown_marker_mode():
    with pytest.raises(ValueError, match="markers"):
        clean_prompt("x", markers="drop")


def test_card_text_uses_fields_in_order():
    api = {
        "domain": "Natural Language Processing Translation",
        "functionality": "Translation",
        "description": "Translates Spanish to English.",
        "api_call": "pipeline('translation_es_to_en')",
        "performance": {"dataset": [{"name": "newstest2013"}, {"name": "Tatoeba"}], "accuracy": 1},
    }
    text = card_text(api, "Helsinki-NLP/opus-mt-es-en")
    assert text.startswith("Helsinki-NLP/opus-mt-es-en (Helsinki NLP opus mt es en)")
    assert text.index("Domain:") < text.index("Functionality:") < text.index("Translates") < text.index("newstest2013")
    assert "pipeline" not in text
    assert split_model_name("a_b/c-d.e") == "a b c d e"


def test_card_text_skips_placeholder_datasets():
    text = card_text({"performance": {"dataset": "None", "accuracy": 0.5}}, "m")
    assert "Evaluated" not in text
