"""xm2-preprocess --shard I/N and --merge: the merged dataset is byte-identical to one run over
the same inputs in the same order; a missing, foreign or stale shard is refused."""

import gzip
import json
import shutil

import pytest

from xm2_megatron.data.preprocess import read_dataset_metadata
from xm2_megatron.data.preprocess_shards import shard_inputs
from xm2_megatron.data.tokenizer import train_tokenizer
from xm2_megatron.tools.preprocess_data import main as preprocess_main

SOURCES = ("web", "code", "math", "chat")
COMPARED = ("format", "json_key", "dtype", "append_eod", "tokenizer", "inputs", "documents",
            "tokens", "skipped_lines", "blank_lines")


@pytest.mark.parametrize("files,count,groups", [
    (5, 2, [[0, 1, 2], [3, 4]]), (4, 4, [[0], [1], [2], [3]]), (7, 3, [[0, 1, 2], [3, 4], [5, 6]]),
])
def test_shards_split_the_inputs_into_contiguous_groups(files, count, groups):
    names = [f"f{i}" for i in range(files)]
    assert [shard_inputs(names, i, count) for i in range(count)] == \
        [[f"f{i}" for i in group] for group in groups]


@pytest.fixture(scope="module")
def inputs(corpus, tmp_path_factory):
    """Five inputs, one gzipped and one with a bad and a blank line."""
    root = tmp_path_factory.mktemp("shards")
    paths = [str(corpus / f"{name}.jsonl") for name in SOURCES]
    with open(corpus / "web.jsonl", "rb") as src, gzip.open(root / "web2.jsonl.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    bad = root / "bad.jsonl"
    bad.write_text('{"text": "one good line"}\n\nnot json\n{"text": "another good line"}\n')
    return [*paths[:2], str(root / "web2.jsonl.gz"), str(bad), *paths[2:]]


def _run(*argv):
    assert preprocess_main([str(a) for a in argv]) == 0


def _common(corpus, inputs, keys=("text",)):
    return ["--tokenizer-model", corpus / "tok.model", "--append-eod", "--workers", "1",
            "--json-keys", *keys, "--input", *inputs]


def test_merged_shards_equal_one_run(corpus, inputs, tmp_path, capsys):
    _run("--output-prefix", tmp_path / "one" / "all", *_common(corpus, inputs))
    for index in range(3):
        _run("--output-prefix", tmp_path / "sharded" / "all", "--shard", f"{index}/3",
             *_common(corpus, inputs))
    _run("--output-prefix", tmp_path / "sharded" / "all", "--merge", *_common(corpus, inputs))
    one, merged = (tmp_path / "one" / "all_text_document", tmp_path / "sharded" / "all_text_document")
    for ext in (".bin", ".idx"):
        assert merged.with_suffix(ext).read_bytes() == one.with_suffix(ext).read_bytes()
    single, joined = read_dataset_metadata(str(one)), read_dataset_metadata(str(merged))
    assert {k: joined[k] for k in COMPARED} == {k: single[k] for k in COMPARED}
    assert single["skipped_lines"] == {"invalid JSON": 1} and single["blank_lines"] == 1
    assert len(joined["merged_from"]) == 3
    shard0 = read_dataset_metadata(str(tmp_path / "sharded" / "all-shard00000-of-00003_text_document"))
    assert [e["path"] for e in shard0["inputs"]] == [str(p) for p in inputs[:2]]


def test_two_keys_merge_alike(corpus, tmp_path):
    """Each key's dataset merges on its own, and both equal the single run's."""
    lines = [json.dumps({"q": f"question {i} " * (1 + i % 4), "a": f"answer {i}"}) for i in range(60)]
    files = []
    for part in range(2):
        files.append(tmp_path / f"qa{part}.jsonl")
        files[-1].write_text("\n".join(lines[30 * part:30 * part + 30]) + "\n")
    _run("--output-prefix", tmp_path / "one", *_common(corpus, files, ("q", "a")))
    for index in range(2):
        _run("--output-prefix", tmp_path / "qa", "--shard", f"{index}/2",
             *_common(corpus, files, ("q", "a")))
    _run("--output-prefix", tmp_path / "qa", "--merge", "--json-keys", "q", "a")
    for key in ("q", "a"):
        for ext in (".bin", ".idx"):
            assert (tmp_path / f"qa_{key}_document{ext}").read_bytes() == \
                (tmp_path / f"one_{key}_document{ext}").read_bytes()


@pytest.fixture
def two_shards(corpus, inputs, tmp_path):
    for index in range(2):
        _run("--output-prefix", tmp_path / "all", "--shard", f"{index}/2", *_common(corpus, inputs))
    return tmp_path / "all"


def _merge_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        preprocess_main(["--merge", *map(str, argv)])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def _outputs(prefix):
    return sorted(prefix.parent.glob(prefix.name + "_text_document*"))


def test_missing_shard_is_refused(two_shards, capsys):
    for path in two_shards.parent.glob("all-shard00001-of-00002_text_document.*"):
        path.unlink()
    err = _merge_error(capsys, "--output-prefix", two_shards)
    assert "1 of 2 shards" in err and "index 1" in err and not _outputs(two_shards)


def test_shards_of_another_input_list_are_refused(corpus, inputs, two_shards, capsys):
    err = _merge_error(capsys, "--output-prefix", two_shards, "--input", *inputs[:-1])
    assert "do not cover --input" in err and "(no more files)" in err
    assert not _outputs(two_shards)


def test_shards_of_another_tokenizer_are_refused(corpus, inputs, two_shards, tmp_path, capsys):
    other = tmp_path / "other"
    train_tokenizer([corpus / "all.txt"], other, vocab_size=300, allow_smaller_vocab=True)
    for path in two_shards.parent.glob("all-shard00001-of-00002_text_document.*"):
        path.unlink()
    _run("--output-prefix", two_shards, "--shard", "1/2", "--tokenizer-model", f"{other}.model",
         "--append-eod", "--workers", "1", "--input", *inputs)
    err = _merge_error(capsys, "--output-prefix", two_shards)
    assert "all-shard00001-of-00002_text_document was tokenized with" in err
    assert not _outputs(two_shards)


def test_stale_shards_of_another_count_are_refused(corpus, inputs, two_shards, capsys):
    _run("--output-prefix", two_shards, "--shard", "0/3", *_common(corpus, inputs))
    err = _merge_error(capsys, "--output-prefix", two_shards)
    assert "different shard counts (2, 3)" in err and not _outputs(two_shards)


def test_existing_merge_output_is_kept_unless_overwrite(two_shards, capsys):
    _run("--output-prefix", two_shards, "--merge")
    before = {p.name: p.read_bytes() for p in _outputs(two_shards)}
    err = _merge_error(capsys, "--output-prefix", two_shards)
    assert "already exist" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in _outputs(two_shards)} == before
    _run("--output-prefix", two_shards, "--merge", "--overwrite")


@pytest.mark.parametrize("argv,message", [
    (["--shard", "2/2"], "0 <= INDEX < COUNT"),
    (["--shard", "0/9"], "9 shards of 6 input file(s)"),
])
def test_bad_shard_flags(corpus, inputs, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        preprocess_main(["--output-prefix", str(tmp_path / "x"), *argv,
                         *map(str, _common(corpus, inputs))])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_input_list_reads_one_file_per_line(corpus, inputs, tmp_path):
    listing = tmp_path / "files.txt"
    listing.write_text("# the corpus\n" + "\n".join(map(str, inputs[2:])) + "\n\n")
    _run("--output-prefix", tmp_path / "listed", "--tokenizer-model", corpus / "tok.model",
         "--workers", "1", "--input", *inputs[:2], "--input-list", listing)
    meta = read_dataset_metadata(str(tmp_path / "listed_text_document"))
    assert [e["path"] for e in meta["inputs"]] == [str(p) for p in inputs]
