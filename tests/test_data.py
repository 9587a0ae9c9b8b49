"""minislm.data: default corpus, text-file corpora, task generators, tokenizer training."""
import hashlib
import json
import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minislm.data import corpus, requirements, tasks, tokenizer_train
from minislm.errors import ConfigError, InputError


# --------------------------------------------------------------------------- default corpus


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def fake_stdlib(tmp_path):
    """A tiny standard-library folder exercising every rule of the extractor."""
    root = tmp_path / "lib"
    _write(root / "alpha.py", '"""Alpha module."""\n\ndef f():\n    """Return one.\n\n    More text.\n    """\n'
                              '\nclass C:\n    """A class."""\n    def m(self):\n        """Return self==value."""\n')
    _write(root / "beta" / "__init__.py", '"""Beta package."""\n')
    _write(root / "beta" / "gamma.py", 'def g():\n    """Return self==value."""\n')  # duplicate -> dropped
    _write(root / "broken.py", "print 'python 2'\n")  # does not parse -> skipped
    _write(root / "test" / "test_x.py", '"""Test docs are skipped."""\n')
    _write(root / "site-packages" / "pkg.py", '"""Third-party docs are skipped."""\n')
    _write(root / "test_y.py", '"""Skipped test file."""\n')
    return root


def test_stdlib_extraction_rules(fake_stdlib, monkeypatch):
    monkeypatch.setattr(corpus, "_help_topics", lambda: [("pydoc_data.topics:if", "The if statement.\r\n")])
    documents = corpus.corpus_documents(fake_stdlib)
    assert documents == [
        ("pydoc_data.topics:if", "The if statement."),
        ("alpha", "Alpha module."),
        ("alpha", "Return one.\n\nMore text."),
        ("alpha", "A class."),
        ("alpha", "Return self==value."),
        ("beta", "Beta package."),
    ]
    splits = corpus.default_corpus(fake_stdlib)
    assert sorted(sum(splits.values(), [])) == sorted(text for _, text in documents)


def test_document_split_is_a_deterministic_90_5_5_hash():
    names = [f"module_{i}" for i in range(20000)]
    assignment = [corpus.document_split(name) for name in names]
    assert assignment == [corpus.document_split(name) for name in names]
    fractions = {split: assignment.count(split) / len(names) for split in corpus.SPLITS}
    assert 0.88 < fractions["train"] < 0.92
    assert 0.04 < fractions["validation"] < 0.06 and 0.04 < fractions["test"] < 0.06


def test_default_corpus_splits_by_module_and_never_share_a_document():
    documents = corpus.corpus_documents()
    texts = [text for _, text in documents]
    assert len(texts) == len(set(texts)), "documents are de-duplicated"
    sources = {split: {s for s, _ in documents if corpus.document_split(s) == split} for split in corpus.SPLITS}
    assert not (sources["train"] & sources["validation"] or sources["train"] & sources["test"]
                or sources["validation"] & sources["test"])
    splits = corpus.default_corpus()
    sets = {split: set(docs) for split, docs in splits.items()}
    assert not (sets["train"] & sets["validation"] or sets["train"] & sets["test"] or sets["validation"] & sets["test"])
    sizes = {split: sum(map(len, docs)) for split, docs in splits.items()}
    total = sum(sizes.values())
    assert total > 1_000_000, "pydoc topics + stdlib docstrings are a few MB"
    assert 0.8 < sizes["train"] / total < 0.95
    assert sizes["validation"] > 20_000 and sizes["test"] > 20_000
    assert any(source.startswith("pydoc_data.topics:") for source, _ in documents)
    assert any(source == "json.decoder" for source, _ in documents)
    assert not any(".test." in f".{source}." or "site-packages" in source for source, _ in documents)


def test_corpus_stats_match_the_text():
    stats = corpus.corpus_stats()
    assert stats["python_version"] == sys.version.split()[0]
    for split in corpus.SPLITS:
        text = corpus.corpus_text(split)
        assert stats[split]["characters"] == len(text)
        assert stats[split]["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
        assert stats[split]["documents"] == len(corpus.default_corpus()[split])
    with pytest.raises(InputError, match="unknown corpus split"):
        corpus.corpus_text("dev")


# --------------------------------------------------------------------------- user text corpora


def test_load_text_corpus_file_and_folder(tmp_path):
    (tmp_path / "one.txt").write_bytes("\ufeffHello\r\nworld\r\n".encode("utf-8"))
    assert corpus.load_text_corpus(tmp_path / "one.txt") == "Hello\nworld\n"
    folder = tmp_path / "folder"
    _write(folder / "b.txt", "second")
    _write(folder / "a" / "z.txt", "first")
    _write(folder / "empty.txt", "   \n")
    _write(folder / "notes.md", "not a txt file")
    assert corpus.load_text_corpus(folder) == "first\n\nsecond"


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("Caf\xe9 cr\xe8me".encode("latin-1"), "not UTF-8 text: byte 0xe9 at offset 3"),
    (b"", "empty"),
    (b" \n\t\n", "empty"),
])
def test_load_text_corpus_refuses_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        corpus.load_text_corpus(path)
    with pytest.raises(InputError, match=message):
        corpus.load_text_corpus(tmp_path)  # the same file found inside a folder


def test_load_text_corpus_refuses_missing_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        corpus.load_text_corpus(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="no .txt files"):
        corpus.load_text_corpus(tmp_path)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet="abc xyz", min_size=0, max_size=40), min_size=3, max_size=60))
def test_split_text_partitions_lines(lines):
    text = "\n".join(lines) + "\n"
    parts = corpus.split_text(text, 0.1, 0.1)
    assert parts["train"] + parts["validation"] + parts["test"] == text
    for part in parts.values():
        assert part == "" or part.endswith("\n")
    assert len(parts["train"]) >= len(parts["test"]) or len(text) < 200


def test_split_text_refuses_bad_fractions():
    with pytest.raises(InputError):
        corpus.split_text("a\nb\nc\n", 0.6, 0.5)
    with pytest.raises(InputError, match="at least 3 lines"):
        corpus.split_text("one line")


# --------------------------------------------------------------------------- tool-call task

RESPONSE_FORMAT = re.compile(r'^<tool_call>\[\{"name": "[a-z_]+", "arguments": \{.*\}\}\]</tool_call>$')


def test_toolcall_dataset_is_deterministic_and_split_80_10_10():
    data = tasks.toolcall_dataset()
    assert data == tasks.toolcall_dataset()
    assert data != tasks.toolcall_dataset(seed=1)
    assert {split: len(examples) for split, examples in data.items()} == {"train": 960, "validation": 120, "test": 120}
    for split, examples in data.items():
        counts = {category: sum(e["category"] == category for e in examples) for category in tasks.CATEGORIES}
        assert set(counts.values()) == {len(examples) // 6}, (split, counts)
    prompts = {split: {e["prompt"].lower() for e in examples} for split, examples in data.items()}
    assert len(prompts["train"]) == 960
    assert not (prompts["train"] & prompts["test"] or prompts["train"] & prompts["validation"]
                or prompts["validation"] & prompts["test"])


def test_toolcall_responses_follow_the_thesis_format():
    tool_names = {tool["name"] for tool in tasks.TOOLS}
    for example in tasks.toolcall_examples(per_category=100, seed=3):
        response = example["response"]
        if example["category"] == "general_knowledge":
            assert example["tool_calls"] is None and "<tool_call>" not in response
            assert response.endswith(".") and tasks.parse_tool_calls(response) is None
            assert tasks.response_category(response) == "general_knowledge"
            continue
        assert RESPONSE_FORMAT.match(response), response
        calls = tasks.parse_tool_calls(response)
        assert calls == example["tool_calls"]
        assert calls[0]["name"] == example["category"] and calls[0]["name"] in tool_names
        assert set(calls[0]["arguments"]) <= set(next(t for t in tasks.TOOLS if t["name"] == calls[0]["name"])
                                                 ["parameters"])
        assert tasks.response_category(" " + response + " and more text") == example["category"]
        assert example["prompt"][0].isupper() and example["prompt"][-1] in ".?"


def test_toolcall_slot_values_are_consistent():
    examples = tasks.toolcall_examples(per_category=300)
    for example in examples:
        calls = example["tool_calls"]
        if example["category"] == "vehicle_control":
            state = calls[0]["arguments"]["target_state"]
            assert isinstance(state, int)
            if calls[0]["arguments"]["setting"] == "temperature":
                assert 16 <= state <= 28 and str(state) in example["prompt"]
        if example["category"] == "make_call":
            (value,) = calls[0]["arguments"].values()
            assert value in example["prompt"]
        if example["category"] == "general_knowledge" and " times " in example["prompt"]:
            a, b = map(int, re.findall(r"\d+", example["prompt"]))
            assert example["response"] == f"{a} times {b} is {a * b}."


def test_rendering_and_split_example():
    example = {"category": "make_call", "prompt": "Call John Doe.",
               "response": tasks.format_tool_calls([{"name": "make_call", "arguments": {"contact": "John Doe"}}])}
    assert tasks.render_example(example) == ('User: Call John Doe.\nAssistant: <tool_call>[{"name": "make_call", '
                                             '"arguments": {"contact": "John Doe"}}]</tool_call>')
    prompt_text, response_text = tasks.split_example(example)
    assert prompt_text == tasks.render_prompt("Call John Doe.") == "User: Call John Doe.\nAssistant:"
    assert prompt_text + response_text == tasks.render_example(example)


_json_values = st.one_of(st.text(max_size=20), st.integers(-1000, 1000), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "name": st.sampled_from(tasks.TOOL_NAMES),
    "arguments": st.dictionaries(st.text(min_size=1, max_size=10), _json_values, max_size=4)}), min_size=1, max_size=3))
def test_parse_tool_calls_round_trips(calls):
    assert tasks.parse_tool_calls(tasks.format_tool_calls(calls)) == calls


@pytest.mark.parametrize("text", [
    "The capital of France is Paris.",
    "<tool_call>[{\"name\": \"navigation\", \"arguments\": {\"destination\": \"home\"}}]",  # not closed
    "<tool_call>[{\"name\": \"navigation\" \"arguments\": {}}]</tool_call>",  # bad JSON
    "<tool_call>{\"name\": \"navigation\", \"arguments\": {}}</tool_call>",  # not a list
    "<tool_call>[]</tool_call>",
    "<tool_call>[{\"name\": \"navigation\"}]</tool_call>",  # no arguments
    "<tool_call>[{\"name\": 3, \"arguments\": {}}]</tool_call>",
    "<tool_call>[{\"name\": \"x\", \"arguments\": []}]</tool_call>",
    "<tool call>[{\"name\": \"x\", \"arguments\": {}}]</tool_call>",  # the thesis's own typo
])
def test_parse_tool_calls_rejects_malformed_text(text):
    assert tasks.parse_tool_calls(text) is None
    assert tasks.response_category(text) in (None, "general_knowledge")


def test_task_texts_and_errors():
    toolcall = tasks.task_texts("toolcall", "validation")
    assert len(toolcall) == 120 and all(text.startswith("User: ") and "\nAssistant: " in text for text in toolcall)
    assert len(tasks.task_texts("requirements", "test")) == 200
    with pytest.raises(InputError, match="unknown task"):
        tasks.task_texts("translation")
    with pytest.raises(InputError, match="unknown split"):
        tasks.task_texts("toolcall", "dev")
    with pytest.raises(ConfigError):
        tasks.toolcall_examples(per_category=0)


# --------------------------------------------------------------------------- requirement sentences


def test_requirement_sentences_are_varied_iso_style_and_held_out():
    data = requirements.requirements_dataset()
    assert data == requirements.requirements_dataset()
    assert {split: len(s) for split, s in data.items()} == {"train": 1600, "validation": 200, "test": 200}
    everything = data["train"] + data["validation"] + data["test"]
    assert len(set(everything)) == len(everything)
    assert not set(data["test"]) & set(data["train"])
    modal = re.compile(r"\b(shall|must|should)\b")
    for sentence in everything:
        assert sentence[0].isupper() and sentence.endswith(".") and modal.search(sentence), sentence
        assert "{" not in sentence and "  " not in sentence
    assert sum(bool(re.search(r"\d", s)) for s in everything) > 400, "performance numbers"
    assert sum(s.startswith(("When ", "If ", "During ", "Upon ")) for s in everything) > 300, "conditions"
    for word in ("shall", "must", "should", "shall not"):
        assert any(f" {word} " in s for s in everything), word
    for prompt in requirements.SLIDE_PROMPTS:
        assert any(s.startswith(prompt + " ") for s in data["train"]), prompt
    assert requirements.requirement_sentences(50, seed=7) != requirements.requirement_sentences(50, seed=8)


# --------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def small_texts():
    return corpus.default_corpus()["validation"][:200] + tasks.task_texts("toolcall", "train")[:100]


def test_tokenizer_training_is_deterministic(small_texts):
    first = tokenizer_train.train_tokenizer(small_texts, vocab_size=600)
    second = tokenizer_train.train_tokenizer(small_texts, vocab_size=600)
    assert first.to_str() == second.to_str()
    assert first.get_vocab_size() == 600
    assert first.token_to_id("<|endoftext|>") == 0 and first.token_to_id("<|pad|>") == 1


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=80))
def test_byte_level_tokenizer_round_trips_any_text(text):
    tokenizer = _shared_tokenizer()
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


_TOKENIZER = []


def _shared_tokenizer():
    if not _TOKENIZER:
        texts = corpus.default_corpus()["test"][:100]
        _TOKENIZER.append(tokenizer_train.train_tokenizer(texts, vocab_size=400))
    return _TOKENIZER[0]


def test_saved_tokenizer_loads_in_minislm_and_transformers(tmp_path, small_texts):
    from minislm.tokenizer import load_tokenizer
    trained = tokenizer_train.train_tokenizer(small_texts, vocab_size=600)
    tokenizer_train.save_tokenizer(trained, tmp_path, model_max_length=256)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["eos_token"] == config["bos_token"] == "<|endoftext|>" and config["pad_token"] == "<|pad|>"
    text = tasks.task_texts("toolcall", "test")[0] + "<|endoftext|>"
    ids = trained.encode(text).ids
    assert ids[-1] == 0
    assert load_tokenizer(tmp_path).encode(text).ids == ids
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert auto(text)["input_ids"] == ids
    assert auto.eos_token_id == 0 and auto.pad_token_id == 1
    assert auto.decode(ids) == text


def test_tokenizer_refuses_bad_settings():
    with pytest.raises(InputError):
        tokenizer_train.train_tokenizer(["", "  "])
    with pytest.raises(ConfigError, match="at least 258"):
        tokenizer_train.train_tokenizer(["some text"], vocab_size=100)
