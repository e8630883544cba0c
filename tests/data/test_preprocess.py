"""tools/preprocess_data.py: JSON Lines -> megatron-core indexed datasets.

Round trip through megatron's ``IndexedDataset``, byte-identical output for any worker count,
bad-line accounting, ``--strict``, atomic output under SIGKILL, gzip input, the sidecar.
"""

import glob
import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import sentencepiece as spm

from xm2_megatron.data import preprocess as pp
from xm2_megatron.data.jsonl import DataError
from xm2_megatron.data.preprocess_output import Outputs
from xm2_megatron.data.tokenizer import Tokenizer
from xm2_megatron.tools.preprocess_data import main as preprocess_main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "preprocess_data.py")

DOCS = [
    "The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces.",
    ("Megatron writes indexed datasets; each document may end with an end-of-text id.\n\n"
     "A second paragraph, with  two spaces and a trailing newline.\n"),
    "人工智能正在改变世界。我们使用小型语言模型进行实验，数据来自多个来源。",
    "中文和 English 混合的句子，包括数字 12345 和标点！",
    "def add(a, b):\n    return a + b\n\n\nclass Tokenizer:\n\tpass  # a tab\n",
    'for i in range(10):\n    print(f"{i ** 2:>4}")\r\n',
    "  leading spaces, emoji 🤖, accents ünïcödé, and a zero\u200bwidth space",
]


def _train_tokenizer(path: str) -> None:
    """A tiny SentencePiece model that reproduces any text exactly (identity normalization,
    byte fallback)."""
    lines = [line for doc in DOCS for line in doc.splitlines() if line.strip()] * 20
    with open(path, "wb") as f:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=f, vocab_size=600, model_type="unigram",
            byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, hard_vocab_limit=False, minloglevel=2)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok") / "tiny.model")
    _train_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def sp(tokenizer):
    return spm.SentencePieceProcessor(model_file=tokenizer)


def jsonl(path, texts) -> str:
    """Write ``{"text": ..., "id": ...}`` lines to ``path``, gzipped for ``*.gz``."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts))
    return str(path)


def read_documents(prefix: str) -> list[np.ndarray]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(prefix)
    assert list(dataset.document_indices) == list(range(len(dataset) + 1))  # one sequence each
    return [dataset[i].copy() for i in range(len(dataset))]  # views die with the dataset's mmap


def dataset_bytes(prefix) -> list[bytes]:
    return [Path(f"{prefix}.{ext}").read_bytes() for ext in ("bin", "idx")]


def outputs(directory) -> list[str]:
    return sorted(os.listdir(directory))


def is_temporary(name: str, dataset: str) -> bool:
    """``name`` is a run's hidden temporary file of ``dataset``'s ``.bin`` or ``.idx``."""
    return name.startswith((f".{dataset}.bin.", f".{dataset}.idx.")) and name.endswith(".tmp")


def many_docs(n: int) -> list[str]:
    return [f"{i}: {DOCS[i % len(DOCS)]}" * (1 + i % 3) for i in range(n)]


@pytest.mark.parametrize("append_eod", [True, False])
def test_round_trip_through_megatron_indexed_dataset(tmp_path, tokenizer, sp, append_eod):
    texts = DOCS * 3
    summary = pp.preprocess([jsonl(tmp_path / "in.jsonl", texts)], tmp_path / "out/mix",
                            tokenizer, append_eod=append_eod, workers=2, chunk_bytes=300)
    prefix = str(tmp_path / "out/mix_text_document")
    docs = read_documents(prefix)
    assert len(docs) == summary.documents == len(texts)
    assert sum(map(len, docs)) == summary.tokens["text"]
    for doc, text in zip(docs, texts):
        assert doc.dtype == np.uint16  # DType.optimal_dtype of a 600-piece vocabulary
        ids = doc.tolist()
        assert ids.count(sp.eos_id()) == int(append_eod)
        if append_eod:
            assert ids[-1] == sp.eos_id()
            ids = ids[:-1]
        assert sp.decode(ids) == text
    assert outputs(tmp_path / "out") == [f"mix_text_document.{e}" for e in ("bin", "idx", "json")]


def test_round_trip_demo_text(tmp_path, tokenizer, sp):
    files = sorted(glob.glob(os.path.join(REPO, "data", "demo", "*.jsonl")))
    if not files:
        pytest.skip("no data/demo/*.jsonl")
    texts = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in itertools.islice(f, 100):
                text = json.loads(line).get("text")
                if isinstance(text, str) and text.strip():
                    texts.append(text)
    pp.preprocess([jsonl(tmp_path / "demo.jsonl", texts)], tmp_path / "demo", tokenizer,
                  append_eod=True, workers=2)
    docs = read_documents(str(tmp_path / "demo_text_document"))
    assert [sp.decode(doc.tolist()[:-1]) for doc in docs] == texts


def test_output_identical_for_any_worker_count(tmp_path, tokenizer):
    src = jsonl(tmp_path / "in.jsonl", many_docs(400))
    files = {}
    for workers in (1, 2, 3):
        pp.preprocess([src], tmp_path / f"w{workers}/d", tokenizer, append_eod=True,
                      workers=workers, chunk_bytes=1500)
        files[workers] = dataset_bytes(tmp_path / f"w{workers}/d_text_document")
    assert files[1] == files[2] == files[3]

    # ... and identical to megatron's own builder fed one document at a time
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.uint16)
    for doc in read_documents(str(tmp_path / "w1/d_text_document")):
        builder.add_document(doc, [len(doc)])
    builder.finalize(str(tmp_path / "ref.idx"))
    assert files[1] == dataset_bytes(tmp_path / "ref")


BAD_LINES = [
    json.dumps({"text": "good one"}).encode(),
    b'{"text": "unterminated',  # line 2
    b"",  # blank: ignored, not counted as bad
    json.dumps(["a", "list"]).encode(),  # line 4
    json.dumps({"body": "no text key"}).encode(),  # line 5
    json.dumps({"text": 42}).encode(),  # line 6
    json.dumps({"text": ""}).encode(),  # line 7
    json.dumps({"text": " \n\t "}).encode(),  # line 8
    b'{"text": "lone \\ud800 surrogate"}',  # line 9
    b'{"text": "bad utf-8 \xff"}',  # line 10
    json.dumps({"text": "good two"}).encode(),
    json.dumps({"text": None}).encode(),  # line 12
]


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in BAD_LINES))
    return str(path)


def test_bad_lines_skipped_and_counted(tmp_path, tokenizer, bad_file, capsys):
    preprocess_main(["--input", bad_file, "--output-prefix", str(tmp_path / "out/b"),
             "--tokenizer-model", tokenizer, "--workers", "2"])
    report = capsys.readouterr().out
    assert "2 documents" in report
    assert "skipped 9 lines:" in report
    expected = {
        "invalid JSON": ["2", "10"], "not a JSON object": ["4"], "missing key 'text'": ["5"],
        "non-string 'text'": ["6", "12"], "empty 'text'": ["7", "8"],
        "invalid Unicode in 'text'": ["9"],
    }
    for reason, lines in expected.items():
        where = ", ".join(f"{bad_file}:{n}" for n in lines)
        assert f"  {reason}: {len(lines)} ({where})" in report
    assert "ignored 1 blank lines" in report
    meta = pp.read_dataset_metadata(str(tmp_path / "out/b_text_document"))
    assert meta["skipped_lines"] == {reason: len(lines) for reason, lines in expected.items()}
    assert meta["documents"] == 2 and meta["blank_lines"] == 1


def test_strict_fails_at_first_bad_line(tmp_path, tokenizer, bad_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        preprocess_main(["--input", bad_file, "--output-prefix", str(tmp_path / "out/b"),
                 "--tokenizer-model", tokenizer, "--strict"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad_file}:2: invalid JSON") and "\n" not in err
    assert outputs(tmp_path / "out") == []


def test_no_documents_is_an_error(tmp_path, tokenizer):
    src = tmp_path / "in.jsonl"
    src.write_text('{"body": 1}\n\n')
    with pytest.raises(DataError, match=r"no documents in .*\(1 bad and 1 blank lines\)"):
        pp.preprocess([str(src)], tmp_path / "out/x", tokenizer)
    assert outputs(tmp_path / "out") == []


@pytest.mark.parametrize("flag, value, message", [
    ("--input", "missing.jsonl", "input file"),
    ("--tokenizer-model", "missing.model", "tokenizer model"),
    ("--output-prefix", "a_file/x", "cannot write to output directory"),
])
def test_clear_errors(tmp_path, tokenizer, flag, value, message, capsys):
    (tmp_path / "a_file").write_text("a file, not a directory")
    args = {"--input": jsonl(tmp_path / "in.jsonl", DOCS), "--tokenizer-model": tokenizer,
            "--output-prefix": str(tmp_path / "out/x"), flag: str(tmp_path / value)}
    with pytest.raises(SystemExit) as exit_info:
        preprocess_main([item for pair in args.items() for item in pair])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert message in err and os.path.dirname(value) in err


def test_gzip_input_gives_the_same_dataset(tmp_path, tokenizer):
    texts = many_docs(100)
    for name in ("plain.jsonl", "packed.jsonl.gz"):
        pp.preprocess([jsonl(tmp_path / name, texts)], tmp_path / name.split(".")[0], tokenizer,
                      append_eod=True, chunk_bytes=2000)
    assert (dataset_bytes(tmp_path / "plain_text_document")
            == dataset_bytes(tmp_path / "packed_text_document"))


def test_sidecar_and_tokenizer_check(tmp_path, tokenizer, sp):
    src = jsonl(tmp_path / "in.jsonl", DOCS)
    pp.preprocess([src], tmp_path / "d", tokenizer, append_eod=True)
    prefix = str(tmp_path / "d_text_document")
    meta = pp.read_dataset_metadata(prefix)
    sha = Tokenizer(tokenizer).sha256
    assert meta["tokenizer"] == {"model": os.path.abspath(tokenizer), "sha256": sha,
                                 "vocab_size": sp.get_piece_size(), "eod_id": sp.eos_id()}
    assert meta["inputs"] == [{"path": os.path.abspath(src), "bytes": os.path.getsize(src)}]
    assert meta["documents"] == len(DOCS) and meta["append_eod"] is True
    assert meta["dtype"] == "uint16" and meta["json_key"] == "text"
    assert meta["tokens"] == sum(len(sp.encode(t)) + 1 for t in DOCS)
    assert pp.check_tokenizer(prefix, sha) == meta
    with pytest.raises(DataError, match="was tokenized with .*tiny.model .*re-run"):
        pp.check_tokenizer(prefix, "0" * 64)
    with pytest.raises(DataError, match="does not exist"):
        pp.read_dataset_metadata(str(tmp_path / "other_text_document"))


def test_several_json_keys_stay_aligned(tmp_path, tokenizer, sp):
    records = [{"title": f"title {i}", "text": text} for i, text in enumerate(DOCS)]
    records.insert(2, {"text": "no title"})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = pp.preprocess([str(src)], tmp_path / "d", tokenizer, json_keys=["text", "title"])
    assert summary.skipped == {"missing key 'title'": 1}
    titles = read_documents(str(tmp_path / "d_title_document"))
    texts = read_documents(str(tmp_path / "d_text_document"))
    assert [sp.decode(t.tolist()) for t in titles] == [f"title {i}" for i in range(len(DOCS))]
    assert [sp.decode(t.tolist()) for t in texts] == DOCS
    assert pp.read_dataset_metadata(str(tmp_path / "d_title_document"))["json_key"] == "title"


def _start_and_kill(victim: str, src: str, out, tokenizer) -> tuple[int, str]:
    """Run the tool, SIGKILL ``victim`` (the tool or one of its workers) after the first
    progress line; the tool's exit status and the rest of its stderr."""
    proc = subprocess.Popen(
        [sys.executable, TOOL, "--input", src, "--output-prefix", str(out / "big"),
         "--tokenizer-model", tokenizer, "--workers", "2", "--log-interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("[preprocess]"):
                break
        workers = psutil.Process(proc.pid).children()
        os.kill(proc.pid if victim == "tool" else workers[0].pid, signal.SIGKILL)
        proc.wait(timeout=60)
        error = proc.stderr.read()
    finally:
        proc.kill()
        proc.stderr.close()
    assert psutil.wait_procs(workers, timeout=10)[1] == []  # no worker outlives the tool
    return proc.returncode, error


@pytest.mark.parametrize("victim", ["tool", "worker"])
def test_killed_run_leaves_no_dataset_and_rerun_succeeds(tmp_path, tokenizer, victim, capsys):
    src = jsonl(tmp_path / "big.jsonl", many_docs(60_000))  # ~8 MB: seconds of work
    out = tmp_path / "out"
    returncode, error = _start_and_kill(victim, src, out, tokenizer)
    assert not any(name.endswith((".bin", ".idx")) for name in outputs(out)), outputs(out)
    if victim == "worker":
        assert returncode == 2
        errors = [line for line in error.splitlines() if not line.startswith("[preprocess]")]
        assert errors == [("error: a tokenizer worker died (killed, or out of memory?); "
                           "no dataset was written")]
        assert outputs(out) == []
        return
    assert returncode == -signal.SIGKILL
    leftovers = outputs(out)  # only hidden temporaries, which never look like a dataset
    assert leftovers and all(is_temporary(name, "big_text_document") for name in leftovers)
    code = preprocess_main(["--input", src, "--output-prefix", str(out / "big"),
                            "--tokenizer-model", tokenizer, "--workers", "2"])
    report = capsys.readouterr()
    assert code == 0 and "60,000 documents" in report.out
    assert f"note: {len(leftovers)} hidden temporary file(s)" in report.err
    dataset = [f"big_text_document.{e}" for e in ("bin", "idx", "json")]
    assert outputs(out) == sorted(leftovers + dataset)  # the leftovers are left alone
    assert pp.read_dataset_metadata(str(out / "big_text_document"))["documents"] == 60_000


# ---------------------------------------------------------------- existing outputs


def _files(prefix) -> dict[str, bytes]:
    return {ext: Path(f"{prefix}.{ext}").read_bytes() for ext in ("bin", "idx", "json")}


def test_existing_dataset_is_kept_unless_overwrite(tmp_path, tokenizer, monkeypatch, capsys):
    pp.preprocess([jsonl(tmp_path / "old.jsonl", DOCS)], tmp_path / "out/d", tokenizer)
    before, prefix = _files(tmp_path / "out/d_text_document"), str(tmp_path / "out/d")
    argv = ["--input", jsonl(tmp_path / "new.jsonl", many_docs(50)), "--output-prefix", prefix,
            "--tokenizer-model", tokenizer, "--workers", "1"]

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the existing outputs were checked")

    monkeypatch.setattr(pp, "worker_pool", no_work)
    monkeypatch.setattr(pp, "_load_tokenizer", no_work)
    with pytest.raises(SystemExit) as exit_info:
        preprocess_main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert err.endswith("already exist: pass --overwrite to replace them, or choose another "
                        "--output-prefix\n")
    assert all(f"{prefix}_text_document.{ext}" in err for ext in ("bin", "idx", "json"))
    assert _files(tmp_path / "out/d_text_document") == before
    assert outputs(tmp_path / "out") == [f"d_text_document.{e}" for e in ("bin", "idx", "json")]

    monkeypatch.undo()
    assert preprocess_main([*argv, "--overwrite"]) == 0
    assert "note:" not in capsys.readouterr().err
    after = _files(tmp_path / "out/d_text_document")
    assert after["bin"] != before["bin"] and after["idx"] != before["idx"]
    assert len(read_documents(f"{prefix}_text_document")) == 50
    assert pp.read_dataset_metadata(f"{prefix}_text_document")["documents"] == 50
    assert outputs(tmp_path / "out") == [f"d_text_document.{e}" for e in ("bin", "idx", "json")]


def test_one_existing_file_is_enough_to_refuse(tmp_path, tokenizer):
    (tmp_path / "d_title_document.idx").write_bytes(b"someone else's")
    with pytest.raises(DataError, match=r"d_title_document\.idx already exists: pass "
                                        r"--overwrite to replace it"):
        pp.preprocess([jsonl(tmp_path / "in.jsonl", DOCS)], tmp_path / "d", tokenizer,
                      json_keys=["text", "title"])
    assert (tmp_path / "d_title_document.idx").read_bytes() == b"someone else's"
    assert outputs(tmp_path) == ["d_title_document.idx", "in.jsonl"]


def test_two_runs_on_one_prefix_never_share_a_temporary_file(tmp_path):
    from megatron.core.datasets.indexed_dataset import DType

    first, second = (Outputs(str(tmp_path / "d"), ["text"], DType.optimal_dtype(600))
                     for _ in range(2))
    paths = first.temporaries() + second.temporaries()
    assert len(set(paths)) == 4 and {os.path.dirname(p) for p in paths} == {str(tmp_path)}
    assert all(is_temporary(os.path.basename(p), "d_text_document") for p in paths)
    # the first commits; the second, without overwrite, then refuses and leaves it intact
    first.commit([{"run": "first"}])
    committed = _files(tmp_path / "d_text_document")
    with pytest.raises(DataError, match="already exist: pass --overwrite"):
        second.commit([{"run": "second"}])
    second.discard()
    assert _files(tmp_path / "d_text_document") == committed
    assert outputs(tmp_path) == [f"d_text_document.{e}" for e in ("bin", "idx", "json")]


def test_download_wheels_refuses_a_foreign_folder(tmp_path):
    """The check comes before any download, so no network or pip is needed."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/thesis.tex").write_text("irreplaceable")
    result = subprocess.run(["bash", os.path.join(REPO, "scripts/gpu/download_wheels.sh"),
                             str(tmp_path / "mine")], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'mine'} is not empty and was not made")
    assert ".xm2-wheels" in result.stderr and outputs(tmp_path / "mine") == ["thesis.tex"]
    assert (tmp_path / "mine/thesis.tex").read_text() == "irreplaceable"
