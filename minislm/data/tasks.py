"""Task data the project makes itself: in-vehicle tool calls, seeded and held out.

The voice-assistant thesis (``shared/seeds/slm-voice-assistant-thesis.txt``,
sections 5.1-5.3) fine-tunes small models on 1,200 synthetic prompt/response
pairs in six categories, split 80/10/10, with responses in the format

    <tool_call>[{"name": "func_name", "arguments": {"argument1": "value1"}}]</tool_call>

This module regenerates such a data set from templates -- no download, no
teacher LLM -- so every lesson and test sees the same examples.

Categories (``CATEGORIES``) and what the assistant answers:

=================  ====================================================================
make_call          ``make_call`` with ``contact`` (a name or relation) or ``number``
music_control      ``music_control`` with ``action`` (Play, Pause, Resume, Stop, Shuffle,
                   Volume) and, for Play, ``track`` ("Next", "Previous", a title),
                   ``artist``, ``genre`` or ``playlist``; for Volume, ``level`` (0-100)
navigation         ``navigation`` with ``destination`` and sometimes ``avoid``
                   (tolls, highways, ferries)
vehicle_control    ``vehicle_control`` with ``setting`` and ``target_state`` (1 on /
                   0 off, or degrees Celsius / fan level), plus ``seat`` for seat heating
online             ``online`` (the thesis's real-time category) with ``topic``
                   (weather, stock_price, sports_results, flight_status, news,
                   opening_hours) and the topic's slot (location/date, company, team,
                   flight, subject, place)
general_knowledge  no tool: a one-sentence answer in plain text (capitals, authors,
                   arithmetic, unit conversions, science facts -- all computed or true)
=================  ====================================================================

Prompts vary in wording (about a dozen phrasings per intent, politeness
wrappers, questions and commands, some lower-case). Defaults: 200 unique
prompts per category (1,200 in total, as in the thesis), seed 0. The split
(:func:`toolcall_dataset`) shuffles each category with the seed and takes
80 % / 10 % / 10 % of it for train / validation / test, so every split holds
every category in the same proportion; prompts are unique across the whole
set, so no test prompt is ever seen in training. Deviation from the thesis:
no system prompt listing the tools (our tiny models have short contexts);
the model learns the tool set from the examples.

Training text (:func:`render_example`)::

    User: Call John Doe.
    Assistant: <tool_call>[{"name": "make_call", "arguments": {"contact": "John Doe"}}]</tool_call>

:func:`split_example` gives the prompt part (``"User: ...\\nAssistant:"``) and the
response part (starting with a space) separately, so a trainer can put the
loss on the response only and an evaluator can generate from the prompt and
read the answer with :func:`parse_tool_calls`.

The ISO-style requirement sentences of the GPT-2 slides live in
:mod:`minislm.data.requirements`; :func:`task_texts` serves both tasks.
"""

import json
import re

import numpy as np

from minislm.data import _toolcall_slots as slots
from minislm.data.requirements import requirements_dataset
from minislm.errors import ConfigError, InputError

CATEGORIES = ("make_call", "music_control", "navigation", "vehicle_control", "online", "general_knowledge")
TOOL_NAMES = ("make_call", "music_control", "navigation", "vehicle_control", "online")
SPLITS = ("train", "validation", "test")
DEFAULT_PER_CATEGORY = 200
DEFAULT_SEED = 0
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
USER_PREFIX, ASSISTANT_PREFIX = "User: ", "\nAssistant:"

TOOLS = [
    {"name": "make_call", "description": "Call a contact or a phone number.",
     "parameters": {"contact": "name or relation as in the address book", "number": "phone number as spoken"}},
    {"name": "music_control", "description": "Control media playback.",
     "parameters": {"action": "Play | Pause | Resume | Stop | Shuffle | Volume", "track": "Next, Previous or a title",
                    "artist": "performer", "genre": "music genre", "playlist": "playlist name",
                    "level": "volume 0-100"}},
    {"name": "navigation", "description": "Start route guidance.",
     "parameters": {"destination": "place, address or point of interest", "avoid": "tolls | highways | ferries"}},
    {"name": "vehicle_control", "description": "Change a car setting.",
     "parameters": {"setting": "headlights, air_conditioning, temperature, ...", "target_state": "1 on, 0 off, or a value",
                    "seat": "driver | passenger"}},
    {"name": "online", "description": "Fetch real-time information from the internet.",
     "parameters": {"topic": "weather | stock_price | sports_results | flight_status | news | opening_hours",
                    "location": "city", "date": "today | tomorrow | ...", "company": "listed company",
                    "team": "sports team", "flight": "flight number", "subject": "news subject", "place": "venue"}},
]


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _sentence(text: str) -> str:
    """Capitalise the first letter; end with "?" after a question word, else with "."."""
    question = text.split()[0].lower() in slots.QUESTION_WORDS
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + ("?" if question else ".")


def _command(rng: np.random.Generator, phrase: str) -> str:
    """Wrap an imperative ("call Mom") in one of the polite forms drivers use.

    A phrase marked with a leading "!" is already a sentence or question
    ("!I need to talk to Mom") and is only capitalised and punctuated.
    """
    if phrase.startswith("!"):
        return _sentence(phrase[1:])
    return _sentence(_pick(rng, slots.COMMAND_FORMS).format(phrase))


def _call(name: str, **arguments) -> list[dict]:
    return [{"name": name, "arguments": arguments}]


# ---------------------------------------------------------------------------
# One generator per category: rng -> (prompt, tool calls or answer text)


def _make_call(rng):
    if rng.random() < 0.2:
        number = _pick(rng, slots.PHONE_NUMBERS)
        return _command(rng, _pick(rng, slots.DIAL_PHRASES).format(number=number)), _call("make_call", number=number)
    if rng.random() < 0.3:
        contact = _pick(rng, slots.RELATIONS)
    else:
        contact = f"{_pick(rng, slots.FIRST_NAMES)} {_pick(rng, slots.LAST_NAMES)}"
    return _command(rng, _pick(rng, slots.CALL_PHRASES).format(contact=contact)), _call("make_call", contact=contact)


def _music_control(rng):
    kind = _pick(rng, ("next", "previous", "song", "artist", "genre", "playlist", "simple", "volume"))
    if kind in ("next", "previous"):
        arguments = {"action": "Play", "track": kind.capitalize()}
        return _command(rng, _pick(rng, slots.TRACK_PHRASES[kind])), _call("music_control", **arguments)
    if kind == "song":
        song, artist = _pick(rng, slots.SONGS)
        phrase = _pick(rng, slots.SONG_PHRASES).format(song=song, artist=artist)
        return _command(rng, phrase), _call("music_control", action="Play", track=song, artist=artist)
    if kind == "artist":
        artist = _pick(rng, slots.SONGS)[1]
        return _command(rng, _pick(rng, slots.ARTIST_PHRASES).format(artist=artist)), _call(
            "music_control", action="Play", artist=artist)
    if kind == "genre":
        genre = _pick(rng, slots.GENRES)
        return _command(rng, _pick(rng, slots.GENRE_PHRASES).format(genre=genre)), _call(
            "music_control", action="Play", genre=genre)
    if kind == "playlist":
        playlist = _pick(rng, slots.PLAYLISTS)
        return _command(rng, _pick(rng, slots.PLAYLIST_PHRASES).format(playlist=playlist)), _call(
            "music_control", action="Play", playlist=playlist)
    if kind == "volume":
        level = int(_pick(rng, range(0, 101, 5)))
        return _command(rng, _pick(rng, slots.VOLUME_PHRASES).format(level=level)), _call(
            "music_control", action="Volume", level=level)
    action = _pick(rng, tuple(slots.SIMPLE_MUSIC_PHRASES))
    return _command(rng, _pick(rng, slots.SIMPLE_MUSIC_PHRASES[action])), _call("music_control", action=action)


def _navigation(rng):
    place_kind = rng.random()
    if place_kind < 0.35:
        spoken = destination = _pick(rng, slots.LANDMARKS)
    elif place_kind < 0.55:
        spoken, destination = _pick(rng, slots.POINTS_OF_INTEREST)
    elif place_kind < 0.75:
        spoken = destination = _pick(rng, slots.CITIES)
    else:
        street, city, number_first = _pick(rng, slots.STREETS)
        number = int(rng.integers(1, 200))
        spoken = destination = f"{number} {street}, {city}" if number_first else f"{street} {number}, {city}"
    arguments = {"destination": destination}
    phrase = _pick(rng, slots.NAVIGATION_PHRASES).format(place=spoken)
    if rng.random() < 0.2:
        avoid = _pick(rng, ("tolls", "highways", "ferries"))
        phrase += _pick(rng, (" avoiding {0}", " and avoid {0}", " without {0}")).format(avoid)
        arguments["avoid"] = avoid
    return _command(rng, phrase), _call("navigation", **arguments)


def _vehicle_control(rng):
    kind = rng.random()
    if kind < 0.15:
        degrees = int(rng.integers(16, 29))
        return _command(rng, _pick(rng, slots.TEMPERATURE_PHRASES).format(degrees=degrees)), _call(
            "vehicle_control", setting="temperature", target_state=degrees)
    if kind < 0.25:
        level = int(rng.integers(1, 6))
        return _command(rng, _pick(rng, slots.FAN_PHRASES).format(level=level)), _call(
            "vehicle_control", setting="fan_speed", target_state=level)
    setting = _pick(rng, tuple(slots.SWITCHES))
    names, on_phrases, off_phrases = slots.SWITCHES[setting]
    state = int(rng.integers(0, 2))
    phrase = _pick(rng, on_phrases if state else off_phrases).format(name=_pick(rng, names))
    arguments = {"setting": setting, "target_state": state}
    if setting == "seat_heating":
        seat = _pick(rng, ("driver", "passenger"))
        phrase += _pick(rng, (" for the {0}", " on the {0} side", " on the {0} seat")).format(seat)
        arguments["seat"] = seat
    return _command(rng, phrase), _call("vehicle_control", **arguments)


def _online(rng):
    topic = _pick(rng, ("weather", "stock_price", "sports_results", "flight_status", "news", "opening_hours"))
    if topic == "weather":
        city, (date_words, date) = _pick(rng, slots.CITIES), _pick(rng, slots.WEATHER_DATES)
        phrase = _pick(rng, slots.WEATHER_PHRASES).format(city=city, when=date_words)
        arguments = {"topic": topic, "location": city, "date": date}
    elif topic == "stock_price":
        company = _pick(rng, slots.COMPANIES)
        phrase = _pick(rng, slots.STOCK_PHRASES).format(company=company)
        arguments = {"topic": topic, "company": company}
    elif topic == "sports_results":
        team = _pick(rng, slots.TEAMS)
        phrase = _pick(rng, slots.SPORTS_PHRASES).format(team=team)
        arguments = {"topic": topic, "team": team}
    elif topic == "flight_status":
        flight = f"{_pick(rng, slots.AIRLINE_CODES)} {int(rng.integers(1, 2000))}"
        phrase = _pick(rng, slots.FLIGHT_PHRASES).format(flight=flight)
        arguments = {"topic": topic, "flight": flight}
    elif topic == "news":
        subject = _pick(rng, slots.NEWS_SUBJECTS)
        phrase = _pick(rng, slots.NEWS_PHRASES).format(subject=subject)
        arguments = {"topic": topic, "subject": subject}
    else:
        place = _pick(rng, slots.VENUES)
        phrase = _pick(rng, slots.OPENING_PHRASES).format(place=place)
        arguments = {"topic": topic, "place": place}
    return _command(rng, phrase), _call("online", **arguments)


def _general_knowledge(rng):
    kind = _pick(rng, ("capital", "author", "arithmetic", "conversion", "fact"))
    if kind == "capital":
        country, capital = _pick(rng, slots.CAPITALS)
        answer = f"The capital of {country} is {capital}"
        return _sentence(_pick(rng, slots.CAPITAL_QUESTIONS).format(country=country)), \
            answer if answer.endswith(".") else answer + "."
    if kind == "author":
        book, author = _pick(rng, slots.BOOKS)
        return _sentence(_pick(rng, slots.AUTHOR_QUESTIONS).format(book=book)), f"{book} was written by {author}."
    if kind == "arithmetic":
        a, b = int(rng.integers(2, 100)), int(rng.integers(2, 100))
        word, value = _pick(rng, (("plus", a + b), ("minus", a - b), ("times", a * b)))
        return _sentence(_pick(rng, slots.ARITHMETIC_QUESTIONS).format(a=a, op=word, b=b)), \
            f"{a} {word} {b} is {value}."
    if kind == "conversion":
        unit_from, unit_to, factor, offset = _pick(rng, slots.CONVERSIONS)
        amount = int(rng.integers(2, 201))
        value = round(amount * factor + offset, 1)
        value_text = f"{value:g}" if value != int(value) else f"{int(value)}"
        return _sentence(_pick(rng, slots.CONVERSION_QUESTIONS).format(amount=amount, src=unit_from, dst=unit_to)), \
            f"{amount} {unit_from} is about {value_text} {unit_to}."
    questions, answer = _pick(rng, slots.FACTS)
    return _sentence(_pick(rng, questions)), answer


_GENERATORS = {
    "make_call": _make_call, "music_control": _music_control, "navigation": _navigation,
    "vehicle_control": _vehicle_control, "online": _online, "general_knowledge": _general_knowledge,
}


# ---------------------------------------------------------------------------
# Data set, rendering and parsing


def format_tool_calls(calls: list[dict]) -> str:
    """``[{"name": ..., "arguments": {...}}]`` -> ``<tool_call>[...]</tool_call>`` (JSON, thesis spacing).

    A ``</`` inside a string value is written ``<\\/`` (the same string in JSON)
    so it cannot close the block early.
    """
    return TOOL_CALL_OPEN + json.dumps(calls, ensure_ascii=False).replace("</", "<\\/") + TOOL_CALL_CLOSE


def toolcall_examples(per_category: int = DEFAULT_PER_CATEGORY, seed: int = DEFAULT_SEED) -> list[dict]:
    """``per_category`` unique examples of every category, in category order.

    Each example is ``{"category", "prompt", "response", "tool_calls"}`` where
    ``tool_calls`` is the list inside the response (``None`` for general
    knowledge, whose response is the answer sentence). Prompts are unique
    (compared case-insensitively) across all categories.
    """
    if per_category < 1:
        raise ConfigError(f"per_category={per_category}: expected a positive number of examples per category")
    rng = np.random.default_rng(seed)
    seen, examples = set(), []
    for category in CATEGORIES:
        made, attempts = 0, 0
        while made < per_category:
            attempts += 1
            if attempts > 200 * per_category:
                raise ConfigError(f"category {category}: only {made} distinct prompts after {attempts} draws; "
                                  f"per_category={per_category} is more than the templates can vary")
            prompt, result = _GENERATORS[category](rng)
            if prompt.lower() in seen:
                continue
            seen.add(prompt.lower())
            calls = result if isinstance(result, list) else None
            response = format_tool_calls(calls) if calls is not None else result
            examples.append({"category": category, "prompt": prompt, "response": response, "tool_calls": calls})
            made += 1
    return examples


def toolcall_dataset(per_category: int = DEFAULT_PER_CATEGORY, seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
    """The tool-call examples split 80/10/10 into train / validation / test (stratified by category).

    Each category's examples are shuffled with ``seed`` and cut at 80 % and
    90 %; each split is then shuffled once more so categories interleave.
    """
    rng = np.random.default_rng(seed + 1)  # the split's own stream, independent of generation
    examples = toolcall_examples(per_category, seed)
    splits = {name: [] for name in SPLITS}
    for category in CATEGORIES:
        chosen = [example for example in examples if example["category"] == category]
        order = rng.permutation(len(chosen))
        n_train, n_validation = int(round(0.8 * len(chosen))), int(round(0.1 * len(chosen)))
        splits["train"] += [chosen[i] for i in order[:n_train]]
        splits["validation"] += [chosen[i] for i in order[n_train:n_train + n_validation]]
        splits["test"] += [chosen[i] for i in order[n_train + n_validation:]]
    return {name: [split[i] for i in rng.permutation(len(split))] for name, split in splits.items()}


def render_prompt(prompt: str) -> str:
    """The text a model is given: ``"User: <prompt>\\nAssistant:"``."""
    return f"{USER_PREFIX}{prompt}{ASSISTANT_PREFIX}"


def split_example(example: dict) -> tuple[str, str]:
    """(prompt text, response text); the response starts with the space after ``Assistant:``."""
    return render_prompt(example["prompt"]), " " + example["response"]


def render_example(example: dict) -> str:
    """One training text: the rendered prompt followed by the response."""
    prompt_text, response_text = split_example(example)
    return prompt_text + response_text


_TOOL_CALL_BLOCK = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.DOTALL)


def parse_tool_calls(text: str) -> list[dict] | None:
    """Read the first ``<tool_call>[...]</tool_call>`` block of a model's answer.

    Returns the list of ``{"name": str, "arguments": dict}`` calls, or ``None``
    when there is no block, the JSON does not parse, or it is not a list of
    objects with exactly a string ``name`` and an object ``arguments``. Text
    before or after the block (a model that keeps generating) is ignored.
    A plain-text answer (general knowledge) therefore gives ``None``; use
    :func:`response_category` to tell it apart from a broken call.
    """
    match = _TOOL_CALL_BLOCK.search(text)
    if match is None:
        return None
    try:
        calls = json.loads(match.group(1))
    except json.JSONDecodeError:
        return None
    if not isinstance(calls, list) or not calls:
        return None
    for call in calls:
        if not (isinstance(call, dict) and set(call) == {"name", "arguments"}
                and isinstance(call["name"], str) and isinstance(call["arguments"], dict)):
            return None
    return calls


def response_category(text: str) -> str | None:
    """The category an answer falls in: the first tool's name, ``general_knowledge``
    for text without a tool-call tag, or ``None`` for a malformed tool call."""
    calls = parse_tool_calls(text)
    if calls is not None:
        return calls[0]["name"]
    return "general_knowledge" if TOOL_CALL_OPEN not in text and text.strip() else None


def task_texts(task: str, split: str = "train", seed: int = DEFAULT_SEED) -> list[str]:
    """Training texts of a task: ``"toolcall"`` (rendered examples) or ``"requirements"`` (sentences)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if task == "toolcall":
        return [render_example(example) for example in toolcall_dataset(seed=seed)[split]]
    if task == "requirements":
        return list(requirements_dataset(seed=seed)[split])
    raise InputError(f"unknown task {task!r}; expected 'toolcall' or 'requirements'")
