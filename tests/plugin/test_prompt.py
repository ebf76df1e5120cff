"""Music prompts from text: the deterministic cue extractor, LLM replies, and the choice."""

from __future__ import annotations

import musicgen.plugin.prompt
import pytest
from musicgen.plugin.demo import corpus_dir
from musicgen.plugin.prompt import (
    MAX_WORDS,
    build_prompt,
    clean_description,
    describe_with_llm,
    extract_prompt,
    find_llm,
)
from rag_core.errors import ModelUnavailableError


def test_extractor_finds_mood_genre_instruments_and_tempo():
    text = ("A melancholic sea shanty for a lonely night: an accordion and a fiddle play "
            "slowly while the harbour sleeps. The harbour lights fade.")  # fmt: skip
    assert extract_prompt(text) == ("melancholic sea shanty with accordion and fiddle, slow "
                                    "tempo, evoking harbour, sleeps and lights")  # fmt: skip


def test_explicit_bpm_and_multiword_cues():
    prompt = extract_prompt("Neon streets, a synthwave track at 118 BPM with a drum machine.")
    assert prompt.startswith("synthwave with drum machine, 118 bpm")  # not "drums" from "drum"
    assert "drums" not in prompt


def test_missing_cues_are_filled_in_and_any_text_gives_a_usable_prompt():
    assert extract_prompt("A peaceful, serene morning.").startswith(
        "calm ambient with synth pads and soft piano, slow tempo")
    for text in ["", "   ", "1234 5678 !!!", "的 の", "x" * 10_000, "word " * 5000]:
        prompt = extract_prompt(text)
        assert prompt and len(prompt.split()) <= MAX_WORDS and "\n" not in prompt
        assert prompt.startswith("instrumental piece with piano and strings")


def test_opposite_moods_are_not_paired_and_citations_are_ignored():
    prompt = extract_prompt("An energetic party [1]. Later: calm, calm and peaceful [2][3].")
    assert prompt.startswith("calm ambient") and "energetic" not in prompt and "party" not in prompt
    assert "[" not in prompt


def test_the_best_passage_leads():
    harbour, dawn, neon = (
        (corpus_dir() / f"{name}.md").read_text()
        for name in ("harbour-at-night", "mountain-dawn", "neon-city")
    )
    first = extract_prompt([harbour, dawn, neon])
    assert first.startswith("calm, melancholic waltz with accordion, fiddle") and "slow" in first
    assert "118 bpm" not in first  # the neon passage ranks last
    assert extract_prompt([neon, harbour]).startswith("energetic")
    assert extract_prompt([harbour, dawn]) == extract_prompt([harbour, dawn])  # deterministic


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("Prompt: \"Dreamy lofi beat with soft piano, 70 bpm\"\nThis fits because...",
      "Dreamy lofi beat with soft piano, 70 bpm"),
     ("\n\n  calm ambient pads, slow  ", "calm ambient pads, slow"),
     ("ok", None), ("", None), ("[1] [2] !!", None)],
)  # fmt: skip
def test_llm_replies_are_cleaned_or_rejected(reply, expected):
    assert clean_description(reply) == expected


def test_auto_without_an_llm_extracts_and_says_why():
    prompt = build_prompt("a stormy sea and thunder", prompt_from="auto", input="answer")
    assert prompt.builder == "extract" and prompt.llm is None and prompt.input == "answer"
    assert prompt.text.startswith("dramatic orchestral")
    assert "is not available locally" in prompt.notes[0]
    assert "mlx-rag models pull mlx-community/Qwen2.5-0.5B-Instruct-4bit" in prompt.notes[0]
    assert build_prompt("a stormy sea", prompt_from="extract").notes == []


def test_llm_required_but_unavailable_is_an_error():
    with pytest.raises(ModelUnavailableError, match="mlx-rag models pull"):
        build_prompt("a stormy sea", prompt_from="llm")


def test_bad_builder_or_empty_text_is_a_value_error():
    with pytest.raises(ValueError, match="prompt_from must be one of auto, llm, extract"):
        build_prompt("text", prompt_from="gpt")
    with pytest.raises(ValueError, match="no text to build a music prompt from"):
        build_prompt(["", "  "], input="retrieved")


def test_a_local_llm_describes_the_text(tiny_llm, configure, monkeypatch):
    configure(f'[llm]\nmodel = "{tiny_llm}"\n')
    llm, why_not = find_llm(None, required=False)  # a local folder: used without a download
    assert llm is not None and why_not is None
    # The real mlx-lm call; this model only ever writes "[1][1]...", which is no prompt.
    assert describe_with_llm(llm, "A calm harbour at night.") is None
    monkeypatch.setattr(musicgen.plugin.prompt, "describe_with_llm",
                        lambda model, text: f"gentle accordion waltz, slow ({len(text)} chars)")
    prompt = build_prompt(["A calm harbour.", "Fog."], chunk_ids=[3, 9], input="retrieved",
                          sources=["a.md", "b.md", "a.md"])  # fmt: skip
    assert prompt.builder == "llm" and prompt.llm == str(tiny_llm)
    assert prompt.text == "gentle accordion waltz, slow (21 chars)"  # the passages, joined
    assert (prompt.chunk_ids, prompt.sources) == ([3, 9], ["a.md", "b.md"])
    monkeypatch.setattr(musicgen.plugin.prompt, "describe_with_llm", lambda model, text: None)
    prompt = build_prompt("A calm harbour.", prompt_from="llm")
    assert prompt.builder == "extract" and "did not write a usable description" in prompt.notes[0]


def test_the_llm_takes_turns_in_its_lane(tiny_llm, configure):
    """While a server's chat (or job) generates with the LLM, describing music waits."""
    import threading

    from rag_core import model_lane

    configure(f'[llm]\nmodel = "{tiny_llm}"\n')
    llm, _ = find_llm(None, required=False)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (describe_with_llm(llm, "Fog."), done.set()))
    with model_lane(str(tiny_llm)):
        worker.start()
        assert not done.wait(0.5)  # blocked on the lane we hold
    assert done.wait(30)
    worker.join()
