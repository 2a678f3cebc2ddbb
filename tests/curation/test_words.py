from __future__ import annotations

from curation.words import split_words, tokenize


def test_split_words_matches_tokenize() -> None:
    texts = ["Hello, World! It's 42.", "", "  ünïcode_words — naïve café ", "a-b\nc"]
    words = split_words(texts)
    assert words.lengths.tolist() == [len(tokenize(t)) for t in texts]
    flat = [words.vocabulary[c] for c in words.codes]
    assert flat == [w for t in texts for w in tokenize(t)]
    assert tokenize("Hello, World! It's 42.") == ["hello", "world", "it", "s", "42"]


def test_word_hashes_are_crc32_and_stable_across_processes() -> None:
    words = split_words(["Hello world", "world"])
    assert words.hashes().tolist() == [907060870, 980881731, 980881731]
