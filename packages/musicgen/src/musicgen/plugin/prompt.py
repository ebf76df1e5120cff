"""Music prompts from text: an LLM's short description, or a deterministic cue extractor.

MusicGen was trained on short descriptions ("calm ambient with soft piano, slow tempo"), so
both builders return one line of at most ``MAX_WORDS`` words. The extractor always returns a
usable prompt, whatever the text: cues it does not find are filled in from the ones it does
(a genre from the mood, instruments from the genre, a tempo from the mood).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_WORDS = 40  # T5 reads far more, but MusicGen's training captions are short
MAX_LLM_INPUT_CHARS = 3000  # text given to the LLM; enough for a few retrieved chunks
PROMPT_FROM = ("auto", "llm", "extract")

MOODS = {
    "calm": "calm peaceful serene tranquil quiet stillness gentle soothing relaxing relaxed soft "
    "hushed restful",
    "melancholic": "sad sadness melancholy melancholic sorrow grief lonely loneliness mourning "
    "tears longing loss farewell bittersweet",
    "joyful": "happy joy joyful cheerful celebration celebrate celebrating festive sunny playful "
    "laughter delight",
    "energetic": "energetic energy lively exciting excitement powerful wild dancing party "
    "vibrant pulsing",
    "dark": "dark darkness ominous menacing sinister shadow dread gloomy grim",
    "mysterious": "mysterious mystery eerie strange haunting haunted enigmatic secret fog mist "
    "misty",
    "epic": "epic heroic hero battle triumph triumphant grand majestic glory legendary victory",
    "romantic": "romantic romance love tender tenderness intimate passion",
    "dreamy": "dreamy dream floating ethereal hazy weightless",
    "nostalgic": "nostalgic nostalgia memory memories remember childhood vintage faded",
    "tense": "tense tension suspense anxious urgent danger dangerous",
    "dramatic": "dramatic drama storm stormy thunder tempest crashing turbulent",
}
GENRES = {
    "ambient": "ambient drone soundscape",
    "jazz": "jazz swing bebop",
    "blues": "blues",
    "rock": "rock_music rock_band rock_and_roll punk",
    "pop": "pop",
    "folk": "folk",
    "classical": "classical",
    "orchestral": "orchestral orchestra symphony symphonic",
    "cinematic": "cinematic soundtrack film_score",
    "electronic": "electronic edm",
    "techno": "techno",
    "house": "house_music deep_house",
    "synthwave": "synthwave retrowave",
    "lofi hip hop": "lofi lo_fi",
    "hip hop": "hip_hop rap",
    "funk": "funk funky",
    "reggae": "reggae",
    "metal": "heavy_metal metal_music",
    "country": "country_music",
    "sea shanty": "shanty shanties sailor_song",
    "waltz": "waltz",
    "tango": "tango",
    "flamenco": "flamenco",
    "bossa_nova": "bossa_nova",
    "soul": "soul_music",
    "gospel": "gospel",
    "disco": "disco",
    "trance": "trance",
    "drum and bass": "drum_and_bass drum_n_bass",
    "chiptune": "chiptune 8_bit",
    "baroque": "baroque",
    "celtic": "celtic irish gaelic",
    "lullaby": "lullaby lullabies",
    "march": "marching marches military_march",
    "polka": "polka polkas",
    "ballad": "ballad",
    "bluegrass": "bluegrass",
    "latin": "latin salsa samba",
    "minimalist": "minimalist minimalism",
}
INSTRUMENTS = {
    "piano": "piano pianos",
    "acoustic_guitar": "acoustic_guitar",
    "electric_guitar": "electric_guitar",
    "guitar": "guitar guitars",
    "violin": "violin violins",
    "cello": "cello cellos",
    "strings": "strings string_quartet string_section",
    "flute": "flute flutes",
    "saxophone": "saxophone sax",
    "trumpet": "trumpet trumpets",
    "brass": "brass",
    "french horn": "horn horns",
    "drums": "drum drums drumming",
    "percussion": "percussion",
    "bass": "bass bassline double_bass",
    "synths": "synth synths synthesizer synthesizers",
    "organ": "organ",
    "harp": "harp",
    "accordion": "accordion concertina",
    "fiddle": "fiddle fiddles",
    "banjo": "banjo",
    "harmonica": "harmonica",
    "choir": "choir chorus choral",
    "bells": "bell bells chimes",
    "oud": "oud",
    "sitar": "sitar",
    "marimba": "marimba xylophone",
    "clarinet": "clarinet",
    "oboe": "oboe",
    "bagpipes": "bagpipe bagpipes",
    "ukulele": "ukulele",
    "mandolin": "mandolin",
    "tabla": "tabla",
    "hand drums": "hand_drums djembe bongos congas",
    "timpani": "timpani",
    "drum machine": "drum_machine 808",
    "music_box": "music_box",
    "steel drums": "steel_drums steelpan",
}
TEMPOS = {
    "slow tempo": "slow slowly lazy languid drifting unhurried",
    "medium tempo": "steady moderate walking",
    "fast tempo": "fast quick racing rapid frantic driving upbeat uptempo running",
}
OPPOSITE_MOODS = {  # never paired in one prompt
    frozenset(pair) for pair in [("calm", "energetic"), ("calm", "tense"), ("calm", "dramatic"),
        ("calm", "epic"), ("melancholic", "joyful"), ("melancholic", "energetic"),
        ("joyful", "dark"), ("dreamy", "energetic"), ("dreamy", "tense")]
}  # fmt: skip
MOOD_GENRE = {
    "calm": "ambient", "melancholic": "ballad", "joyful": "folk", "energetic": "electronic",
    "dark": "cinematic", "mysterious": "ambient", "epic": "orchestral", "romantic": "ballad",
    "dreamy": "ambient", "nostalgic": "lofi hip hop", "tense": "cinematic",
    "dramatic": "orchestral",
}  # fmt: skip
MOOD_TEMPO = {
    "calm": "slow tempo", "melancholic": "slow tempo", "dreamy": "slow tempo",
    "romantic": "slow tempo", "mysterious": "slow tempo", "dark": "slow tempo",
    "energetic": "fast tempo", "joyful": "fast tempo", "tense": "fast tempo",
}  # fmt: skip
GENRE_INSTRUMENTS = {
    "ambient": ["synth pads", "soft piano"], "jazz": ["piano", "upright bass", "brushed drums"],
    "blues": ["electric_guitar", "harmonica"], "rock": ["electric_guitar", "bass", "drums"],
    "classical": ["strings", "piano"], "orchestral": ["strings", "brass", "timpani"],
    "cinematic": ["strings", "piano", "percussion"], "electronic": ["synths", "drum machine"],
    "synthwave": ["analog synths", "drum machine"], "techno": ["synths", "drum machine"],
    "lofi hip hop": ["mellow piano", "soft drums"], "folk": ["acoustic_guitar", "fiddle"],
    "sea shanty": ["accordion", "fiddle", "stomping percussion"], "celtic": ["fiddle", "harp"],
    "waltz": ["strings", "piano"], "tango": ["bandoneon", "violin", "piano"],
    "flamenco": ["flamenco guitar", "handclaps"], "ballad": ["piano", "strings"],
    "lullaby": ["music_box", "soft piano"], "march": ["brass", "snare drums"],
}  # fmt: skip
DEFAULT_GENRE = "instrumental"
DEFAULT_INSTRUMENTS = ["piano", "strings"]
# Words that say nothing about the scene; with rag_core's stop words they are not key phrases.
FILLER = frozenset(
    """music musical song songs sound sounds tune tunes like also would could one two many much
    well every even still yet may might must shall upon make makes made way ways thing things
    something anything everything time times lines line page text document chapter part
    kind sort lot lots people said says say will shall old new own long little big small great
    last first next best full low high far near away whole""".split()  # noqa: SIM905
)
WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
BPM = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute)\b", re.IGNORECASE)
CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


@dataclass
class MusicPrompt:
    """A prompt for MusicGen and where it came from (recorded in the sidecar)."""

    text: str
    builder: str  # "given" (used as is), "extract" (cue extractor) or "llm"
    input: str = "prompt"  # what it was built from: prompt, text, question, answer, retrieved
    chunk_ids: list = field(default_factory=list)  # retrieved chunks the text came from
    sources: list[str] = field(default_factory=list)  # their files (or the input file)
    llm: str | None = None  # the LLM that wrote the description
    notes: list[str] = field(default_factory=list)  # e.g. why the LLM was not used

    @classmethod
    def given(cls, text: str) -> MusicPrompt:
        """A prompt used as it is given (its whitespace collapsed)."""
        return cls(" ".join(text.split()), "given", "prompt")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _patterns(table: dict[str, str], plurals: bool = True) -> dict[str, re.Pattern]:
    """cue -> regex of its trigger words (space-separated; "_" joins the words of a phrase)."""
    compiled = {}
    for cue, triggers in table.items():
        words = [re.escape(t).replace("_", r"[\s-]+") for t in triggers.split()]
        suffix = "s?" if plurals else ""
        compiled[cue] = re.compile(rf"\b(?:{'|'.join(words)}){suffix}\b", re.IGNORECASE)
    return compiled


_MOODS, _GENRES = _patterns(MOODS), _patterns(GENRES, plurals=False)  # "rocks" is no genre
_INSTRUMENTS, _TEMPOS = _patterns(INSTRUMENTS), _patterns(TEMPOS)


Weight = Callable[[int], float]  # position in the text -> weight of a cue found there


def _ranked(patterns: dict[str, re.Pattern], text: str, weight: Weight) -> list:
    """[(cue, matches)] found in ``text``, highest weighted count first (ties: first seen).

    A match inside a longer one of another cue ("drums" in "hand drums") does not count.
    """
    found = {cue: list(p.finditer(text)) for cue, p in patterns.items()}
    spans = [m.span() for matches in found.values() for m in matches]

    def inside_longer(m: re.Match) -> bool:
        return any(s <= m.start() and m.end() <= e and e - s > m.end() - m.start()
                   for s, e in spans)  # fmt: skip

    ranked = []
    for cue, matches in found.items():
        matches = [m for m in matches if not inside_longer(m)]
        if matches:
            score = sum(weight(m.start()) for m in matches)
            ranked.append((-score, matches[0].start(), cue, matches))
    return [(cue, matches) for _, _, cue, matches in sorted(ranked)]


def _passages(text: str | Sequence[str]) -> tuple[str, Weight]:
    """One text from passages in order of relevance, and the weight at each position:
    1 in the first passage, 1/2 in the second and so on, so the best passage leads."""
    passages = [text] if isinstance(text, str) else list(text)
    joined, ends = "", []
    for passage in passages:
        joined += CITATION.sub(" ", passage or "") + "\n\n"
        ends.append(len(joined))
    return joined, lambda pos: 1 / (1 + bisect.bisect_right(ends, pos))


def extract_prompt(text: str | Sequence[str]) -> str:
    """A music prompt from the mood, genre, instrument and tempo cues and key phrases of
    ``text`` (or of passages, most relevant first); deterministic, and usable whatever the
    text (even an empty one)."""
    from rag_core import STOP_WORDS

    text, weight = _passages(text)
    used: set[str] = set()
    taken: list[tuple[int, int]] = []  # spans of the words cues were taken from

    def take(patterns: dict[str, re.Pattern], n: int) -> list[tuple[str, float]]:
        """The ``n`` top cues and their scores, each from words no cue took before ("drum" of
        "drum machine") and none the opposite of a cue taken before."""
        picked = []
        for cue, matches in _ranked(patterns, text, weight):
            fresh = [m for m in matches if not any(m.start() < e and s < m.end() for s, e in taken)]
            if not fresh:
                continue
            if any(frozenset((cue, p)) in OPPOSITE_MOODS for p, _ in picked):
                used.update(w.lower() for m in fresh for w in WORD.findall(m.group(0)))
                continue
            picked.append((cue, sum(weight(m.start()) for m in fresh)))
            taken.extend(m.span() for m in fresh)
            used.update(w.lower() for m in fresh for w in WORD.findall(m.group(0)))
            if len(picked) == n:
                break
        return picked

    moods = [cue for cue, _ in take(_MOODS, 2)]
    genres = [cue for cue, _ in take(_GENRES, 1)]
    instruments = [cue for cue, _ in take(_INSTRUMENTS, 3)]
    tempos = take(_TEMPOS, 1)
    bpms = [(f"{int(m.group(1))} bpm", weight(m.start())) for m in BPM.finditer(text)
            if 40 <= int(m.group(1)) <= 220]  # fmt: skip
    genre = genres[0] if genres else MOOD_GENRE.get(moods[0], DEFAULT_GENRE) if moods else None
    if not instruments:
        instruments = GENRE_INSTRUMENTS.get(genre or "", DEFAULT_INSTRUMENTS)
    if bpms or tempos:  # an explicit bpm wins over tempo words of the same weight
        tempo = max(bpms[:1] + tempos, key=lambda candidate: candidate[1])[0]
    else:
        tempo = next((MOOD_TEMPO[m] for m in moods if m in MOOD_TEMPO), "medium tempo")
    head = ", ".join(moods) + " " if moods else ""
    head += genre or DEFAULT_GENRE
    if not genres and not moods:
        head = f"{DEFAULT_GENRE} piece"
    parts = [f"{head} with {_join(instruments)}", tempo]
    phrases = key_phrases(text, exclude=used | STOP_WORDS | FILLER, weight=weight)
    if phrases:
        parts.append(f"evoking {_join(phrases)}")
    return limit_words(", ".join(parts))


def key_phrases(
    text: str, exclude: Iterable[str] = (), n: int = 3, weight: Weight | None = None
) -> list[str]:
    """The ``n`` most frequent content words of ``text`` (weighted by position), lower-case;
    ties go to the longer word (more often a noun that names the scene), then to the one
    seen first."""
    exclude = set(exclude)
    counts: dict[str, float] = {}
    first: dict[str, int] = {}
    for match in WORD.finditer(text):
        word = match.group(0).lower().strip("'-")
        if len(word) < 3 or word in exclude:
            continue
        counts[word] = counts.get(word, 0.0) + (weight(match.start()) if weight else 1.0)
        first.setdefault(word, match.start())
    # Plural and singular count as one word, shown in the singular.
    for word in list(counts):
        if word.endswith("s") and word[:-1] in counts:
            counts[word[:-1]] += counts.pop(word)
            first[word[:-1]] = min(first[word[:-1]], first[word])
    return sorted(counts, key=lambda w: (-round(counts[w], 6), -len(w), first[w]))[:n]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def limit_words(text: str, max_words: int = MAX_WORDS) -> str:
    """``text`` on one line, cut to ``max_words`` words."""
    words = text.split()
    return " ".join(words[:max_words]).rstrip(",;:")


# ---- the LLM builder -------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You write prompts for a text-to-music model. Read the text and reply with ONE line "
    "describing music that fits it: genre, mood, instruments and tempo, in at most 25 words. "
    "Reply with the description only: no preamble, no quotes, no explanation."
)
EXAMPLE = "melancholic sea shanty with accordion and fiddle, slow tempo, misty harbour at night"
PREFIX = re.compile(r"^\s*(?:prompt|music|description|music description)\s*:\s*", re.IGNORECASE)


def llm_messages(text: str) -> list[dict]:
    text = CITATION.sub("", text)[:MAX_LLM_INPUT_CHARS]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Example of a reply: {EXAMPLE}\n\nText:\n{text}"},
    ]


def describe_with_llm(llm, text: str, max_tokens: int = 64) -> str | None:
    """The LLM's one-line music description of ``text`` (greedy, so repeatable), or None
    when what it wrote is not a usable prompt. ``llm`` is a rag_core.LanguageModel."""
    from rag_core import model_lane

    # take turns with the model's other users (a server's chats and jobs); a model no plugin
    # knows (a folder loaded directly) has nobody to wait for
    with model_lane(llm.name, missing_ok=True):
        return clean_description(llm.complete(llm_messages(text), max_tokens))


def clean_description(reply: str) -> str | None:
    """The first line of an LLM reply, without quotes or a 'Prompt:' prefix; None if it has
    fewer than three words."""
    line = next((ln for ln in (reply or "").splitlines() if ln.strip()), "")
    line = PREFIX.sub("", line).strip().strip("\"'`*").strip()
    line = limit_words(line)
    words = [w for w in WORD.findall(line) if len(w) > 1]
    return line if len(words) >= 3 else None


def find_llm(model_id: str | None, config=None, *, required: bool) -> tuple[Any, str | None]:
    """(the LLM, None) or (None, why it is not available).

    ``required=False`` ("auto") never downloads: the LLM is used only when it is already
    loaded, a local directory or in the local Hugging Face cache.
    """
    from rag_core import (
        ModelNotFoundError,
        ModelUnavailableError,
        get_config,
        get_llm,
        get_registry,
        resolve_model_path,
    )

    model_id = model_id or (config or get_config()).get("llm.model")
    if required:
        return get_llm(model_id, config), None
    try:
        spec = get_registry().spec(model_id)
        if not get_registry().is_loaded(spec.id):
            resolve_model_path(spec.location, local_files_only=True)
        return get_llm(model_id, config), None
    except (ModelNotFoundError, ModelUnavailableError) as exc:
        first = str(exc).split(". ")[0].rstrip(".")
        return None, f"The LLM '{model_id}' is not available locally ({first})"


def llm_hint(model_id: str | None, config=None) -> str:
    """How to make the LLM available."""
    from rag_core import get_config

    model_id = model_id or (config or get_config()).get("llm.model")
    return (f"Pull it with `mlx-rag models pull {model_id}` to have it describe the music "
            "(or set [llm] model to one you have).")  # fmt: skip


def build_prompt(
    text: str | Sequence[str],
    *,
    prompt_from: str = "auto",
    llm: str | None = None,
    config=None,
    input: str = "text",
    chunk_ids: Iterable = (),
    sources: Iterable[str] = (),
) -> MusicPrompt:
    """The music prompt for ``text`` (or passages, best first): described by the LLM
    (``prompt_from`` "llm", or "auto" when one is available locally), else extracted from
    its cues."""
    if prompt_from not in PROMPT_FROM:
        raise ValueError(f"prompt_from must be one of {', '.join(PROMPT_FROM)}, got "
                         f"{prompt_from!r}.")  # fmt: skip
    passages = [text] if isinstance(text, str) else list(text)
    if not all(isinstance(p, str) for p in passages) or not "".join(passages).strip():
        raise ValueError(f"There is no text to build a music prompt from (input '{input}').")
    prompt = MusicPrompt("", "extract", input, list(chunk_ids), list(dict.fromkeys(sources)))
    if prompt_from != "extract":
        model, why_not = find_llm(llm, config, required=prompt_from == "llm")
        if model is not None:
            description = describe_with_llm(model, "\n\n".join(passages))
            if description:
                prompt.text, prompt.builder, prompt.llm = description, "llm", model.name
                return prompt
            prompt.notes.append(f"The LLM '{model.name}' did not write a usable description, "
                                "so the prompt was extracted from the text.")  # fmt: skip
        else:
            prompt.notes.append(f"{why_not}, so the prompt was extracted from the text. "
                                + llm_hint(llm, config))  # fmt: skip
    prompt.text = extract_prompt(passages)
    return prompt
