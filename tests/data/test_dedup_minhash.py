"""MinHash LSH deduplication: the signature and index API (index A, query B), planted copies,
buckets and rounds over LSH bands, the report, the CLI's method flag and its errors (in
process; test_dedup.py runs the tool itself)."""

import json
import os
import random

import pytest

from tests.data.test_dedup import (
    DISTINCT,
    FOUR_WORDS,
    ONE_WORD,
    PHOTOSYNTHESIS,
    ROME,
    SHOUTED,
    TEA,
    TEA_EDITED,
    read_texts,
    write_jsonl,
)
from xm2_megatron.data.dedup import dedup_files
from xm2_megatron.data.minhash import MinHasher, MinHashIndex, lsh_bands, minhash
from xm2_megatron.tools.dedup import main


def test_signature_is_of_normalised_shingles_and_round_trips():
    hasher = MinHasher()
    a, b = hasher(ROME), minhash(SHOUTED)  # case, punctuation: the same shingle set
    assert len(a.hashvalues) == 128 and a.jaccard(b) == 1.0
    assert (hasher.decode(hasher.encode(a)).hashvalues == a.hashvalues).all()
    assert minhash(ROME).jaccard(minhash(FOUR_WORDS)) > 0.8
    assert max(minhash(x).jaccard(minhash(y)) for i, x in enumerate(DISTINCT)
               for y in DISTINCT[i + 1:]) < 0.1
    assert lsh_bands(0.7, 128) == (14, 9) and lsh_bands(1.0, 128) == (2, 64)


def test_index_a_query_b():
    """Index the distinct texts by name; edited texts find their source, others nothing."""
    index = MinHashIndex()
    for i, text in enumerate(DISTINCT):
        index.add(f"doc{i}", text)
    assert len(index) == 6 and "doc0" in index
    [(key, similarity)] = index.query(ONE_WORD)
    assert key == "doc0" and 0.9 < similarity < 1.0
    assert [k for k, _ in index.query(TEA_EDITED)] == ["doc4"]
    assert index.query("A short unrelated sentence about the weather in spring.") == []
    assert index.query(PHOTOSYNTHESIS, min_jaccard=1.0) == [("doc0", 1.0)]
    lean = MinHashIndex(keep_signatures=False)
    lean.add("rome", ROME)
    assert lean.contains_near(minhash(FOUR_WORDS)) and not lean.contains_near(minhash(TEA))
    with pytest.raises(ValueError, match="keep_signatures"):
        lean.query(ROME)


def planted_corpus(seed=0):
    """60 random-word documents of 200 words, then 20 copies with 2% (4) of their words
    replaced and 10 exact copies, shuffled; returns the texts and the originals' count."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    originals = [rng.choices(vocab, weights, k=200) for _ in range(60)]
    copies = []
    for words in rng.sample(originals, 20):
        words = list(words)
        for i in rng.sample(range(200), 4):
            words[i] = "replaced"
        copies.append(" ".join(words))
    copies += [" ".join(words) for words in rng.sample(originals, 10)]
    rng.shuffle(copies)
    return [" ".join(words) for words in originals] + copies, len(originals)


def test_planted_copies_found_uniques_kept(tmp_path):
    texts, n = planted_corpus()
    path = write_jsonl(tmp_path / "in.jsonl", texts)
    report = dedup_files([path], tmp_path / "out.jsonl")
    assert (report["documents"], report["exact_duplicates"], report["near_duplicates"],
            report["kept"]) == (90, 10, 20, 60)
    assert read_texts(tmp_path / "out.jsonl") == texts[:n]
    simhash = dedup_files([path], tmp_path / "simhash.jsonl", method="simhash")
    assert (simhash["exact_duplicates"], simhash["near_duplicates"]) == (10, 3)
    strict = dedup_files([path], tmp_path / "strict.jsonl", jaccard_threshold=1.0)
    assert (strict["exact_duplicates"], strict["near_duplicates"]) == (10, 0)


def test_rounds_over_bands_find_what_one_bucket_finds(tmp_path):
    texts, _ = planted_corpus(seed=1)
    path = write_jsonl(tmp_path / "in.jsonl", texts)
    single = dedup_files([path], tmp_path / "single.jsonl")
    bucketed = dedup_files([path], tmp_path / "bucketed.jsonl", bucket_size=20)
    assert bucketed["settings"]["rounds"] == 14 and bucketed["rounds"][0]["buckets"] == 5
    assert (single["exact_duplicates"], single["near_duplicates"]) == (10, 20)
    assert (bucketed["exact_duplicates"], bucketed["near_duplicates"]) == (10, 20)
    assert sum(r["near_duplicates"] for r in bucketed["rounds"][1:]) > 0  # split in round 1
    assert (tmp_path / "single.jsonl").read_bytes() == (tmp_path / "bucketed.jsonl").read_bytes()
    one_round = dedup_files([path], tmp_path / "r1.jsonl", bucket_size=20, rounds=1)
    assert one_round["near_duplicates"] < 20


def test_report_records_method_and_settings(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [ROME, FOUR_WORDS, TEA])
    report = dedup_files([path], tmp_path / "out.jsonl", jaccard_threshold=0.5, num_perm=64)
    settings = report["settings"]
    assert settings["method"] == "minhash" and settings["exact_only"] is False
    assert (settings["jaccard_threshold"], settings["num_perm"], settings["lsh_bands"],
            settings["lsh_rows"], settings["shingle_size"]) == (0.5, 64, 14, 4, 2)
    assert report["method"] == "MinHash LSH, Jaccard >= 0.5, 64 permutations in 14 bands of 4"
    assert json.loads((tmp_path / "out.dedup.json").read_text())["settings"] == settings
    exact = dedup_files([path], tmp_path / "exact.jsonl", exact_only=True)
    assert exact["settings"]["method"] == "exact" and exact["kept"] == 3


@pytest.mark.parametrize("method, summary", [
    ([], "MinHash LSH, Jaccard >= 0.7, 128 permutations in 14 bands of 9"),
    (["--method", "minhash", "--jaccard-threshold", "0.9"],
     "MinHash LSH, Jaccard >= 0.9, 128 permutations in 5 bands of 25"),
    (["--method", "simhash", "--hamming-threshold", "7"], "SimHash, Hamming distance <= 7"),
])
def test_cli_method_flag(tmp_path, capsys, method, summary):
    path = write_jsonl(tmp_path / "in.jsonl", [ROME, FOUR_WORDS, ROME])
    assert main(["--input", path, "--output", str(tmp_path / "out.jsonl"), *method]) == 0
    assert capsys.readouterr().out.startswith("3 documents -> 1 kept; removed 1 exact and 1 near "
                                    f"duplicates ({summary};")
    assert json.loads((tmp_path / "out.dedup.json").read_text())["kept"] == 1


@pytest.mark.parametrize("args, message", [
    (["--jaccard-threshold", "1.5"], "--jaccard-threshold=1.5 must be in (0, 1]"),
    (["--jaccard-threshold", "0"], "--jaccard-threshold=0.0 must be in (0, 1]"),
    (["--num-perm", "8"], "--num-perm=8 must be in [16, 1024]"),
    (["--hamming-threshold", "5"], "--hamming-threshold does not apply to --method minhash"),
    (["--method", "simhash", "--num-perm", "64"],
     "--num-perm does not apply to --method simhash"),
    (["--rounds", "15"], "--rounds=15 must be in [1, 14]: after 14 rounds (one per LSH band)"),
    (["--shingle-size", "0"], "--shingle-size=0 must be at least 1"),
])
def test_cli_bad_settings_one_error(tmp_path, capsys, args, message):
    path = write_jsonl(tmp_path / "in.jsonl", [ROME])
    with pytest.raises(SystemExit) as exit_:
        main(["--input", path, "--output", str(tmp_path / "out.jsonl"), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]
