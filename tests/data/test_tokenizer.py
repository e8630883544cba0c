"""Tokenizer training, the wrapper, the report and the CLI's errors: on an inline
multilingual sample (always) and on the demo corpora (when fetched)."""

import hashlib
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest


from xm2_megatron.data.tokenizer import (
    MAX_SENTENCE_BYTES,
    Tokenizer,
    TokenizerError,
    iter_texts,
    report_path,
    train_tokenizer,
    training_lines,
)

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "train_tokenizer.py"
DEMO = REPO / "data" / "demo"
SAMPLE_VOCAB = 600  # the sample's 237 characters + 256 bytes + 3 specials, and some merges
DEMO_VOCAB = 4000  # ~2,000 Chinese characters in the demo sample alone

# A small sample written for these tests: English prose, Chinese prose, Python code.
ENGLISH = """\
The river ran quietly past the old mill, where the miller kept his accounts in a worn leather book.
Every morning he counted 12 sacks of flour, 7 barrels of oil and 365 candles for the long winter.
In 1887 the village built a new school, and the children learned reading, writing and arithmetic.
A tokenizer splits text into pieces; a language model predicts the next piece from the ones before.
Scientists measured the temperature at 3:45 in the afternoon and found it had risen by 2.5 degrees.
She wrote letters to her brother every week, describing the harvest, the weather and the neighbours.
The committee approved the budget of $4,200,000 after a debate that lasted until midnight.
Mountains covered in snow rose behind the town, and travellers stopped to admire the view.
Reading a good book on a rainy evening is one of the simplest pleasures of a quiet life.
The engineer checked every bolt on the bridge before the first train crossed it in the spring.
Markets opened early on Saturday, selling apples, pears, cheese, bread and fresh fish.
Learning a new language takes patience, practice and a willingness to make many small mistakes.
"""

CHINESE = """\
今天天气很好，我们一起去公园散步，看见很多人在湖边钓鱼。
这座城市有很长的历史，街道两旁的老房子已经有一百多年了。
学生们每天早上八点开始上课，下午四点半放学回家。
科学家发现，适量的运动可以让人睡得更好，也能提高学习效率。
他在图书馆里读了一整天的书，晚上才回到宿舍。
春节是中国最重要的传统节日，家家户户都要吃饺子、贴春联。
这家工厂去年生产了三万台机器，比前年增长了百分之十五。
我们应该保护环境，减少浪费，让我们的国家变得更加美丽。
老师告诉我们，读书的时候要认真思考，不要只记住答案。
火车从北京出发，经过六个小时，终于到达了上海。
"""

CODE = """\
def fibonacci(n: int) -> list[int]:
    \"\"\"Return the first n Fibonacci numbers.\"\"\"
    numbers = [0, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[:n]


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def increment(self, step: int = 1) -> int:
        self.value += step
        return self.value


for index, item in enumerate(["alpha", "beta", "gamma"]):
    if index % 2 == 0:
        print(f"{index}: {item.upper()}")
    else:
        print(f"{index}: {item}")

result = {key: len(key) for key in ("one", "three", "seventeen")}
assert sum(result.values()) == 17, "unexpected total"
"""


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The inline sample as a jsonl corpus, and a plain-text held-out file."""
    root = tmp_path_factory.mktemp("sample")
    corpus = _write_jsonl(root / "sample.jsonl", [
        {"text": ENGLISH, "source": "en"}, {"text": CHINESE, "source": "zh"},
        {"text": CODE, "source": "code"}])
    heldout = root / "heldout.txt"
    heldout.write_text("The miller counted 40 candles.\n\n老师告诉我们要认真思考。\n",
                       encoding="utf-8")
    return corpus, heldout


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
    corpus, heldout = sample
    prefix = tmp_path_factory.mktemp("tok") / "tokenizer"
    report = train_tokenizer([corpus], prefix, SAMPLE_VOCAB, heldout=heldout)
    return prefix, report, Tokenizer(f"{prefix}.model")


def run_tool(monkeypatch, capsys, *args):
    """Run tools/train_tokenizer.py in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["train_tokenizer.py", *map(str, args)])
    try:
        runpy.run_path(str(TOOL), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- the trained tokenizer

def test_special_ids_and_no_pad(trained):
    _, report, tok = trained
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, -1)
    assert [tok.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert report["special_ids"] == {"unk": 0, "bos": 1, "eos": 2, "pad": -1}


@pytest.mark.parametrize("text", [*ENGLISH.splitlines(), *CHINESE.splitlines(), *CODE.splitlines(),
                                  ENGLISH, CHINESE, CODE, "  two  spaces\tand a tab  ",
                                  "全角数字１９９８年和ASCII 1998混排"])
def test_round_trip_is_exact(trained, text):
    tok = trained[2]
    assert tok.decode(tok.encode(text)) == text


def test_unseen_characters_fall_back_to_bytes(trained):
    tok = trained[2]
    ids = tok.encode("party 🎉 time")
    pieces = [tok.id_to_piece(i) for i in ids]
    assert ["<0xF0>", "<0x9F>", "<0x8E>", "<0x89>"] == [p for p in pieces if p.startswith("<0x")]
    assert tok.unk_id not in ids
    assert tok.decode(ids) == "party 🎉 time"


def test_digits_are_split(trained):
    tok = trained[2]
    ids = tok.encode("In 1887 they sold 365 candles for $4,200,000.")
    pieces = [tok.id_to_piece(i) for i in ids]
    assert max(sum(c.isdigit() for c in p) for p in pieces) == 1
    assert sum(sum(c.isdigit() for c in p) for p in pieces) == 14


def test_encode_batch_matches_encode(trained):
    tok = trained[2]
    lines = CHINESE.splitlines()
    assert tok.encode_batch(lines) == [tok.encode(line) for line in lines]


def test_report_and_files(trained, sample):
    prefix, report, tok = trained
    model = Path(f"{prefix}.model")
    assert sorted(p.name for p in prefix.parent.iterdir()) == [
        "tokenizer.model", "tokenizer.report.json", "tokenizer.vocab"]
    assert json.loads(report_path(prefix).read_text()) == report
    assert report["sha256"] == tok.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert report["vocab_size"] == report["requested_vocab_size"] == tok.vocab_size == SAMPLE_VOCAB
    lines = sum(1 for text in (ENGLISH, CHINESE, CODE) for line in text.split("\n") if line.strip())
    assert report["inputs"] == [{"path": str(sample[0]), "texts": 3, "lines": lines}]
    assert report["lines_sampled"] == report["lines_total"] == report["inputs"][0]["lines"]
    settings = report["settings"]
    assert (settings["model_type"], settings["byte_fallback"], settings["split_digits"],
            settings["character_coverage"], settings["pad_id"]) == (
        "unigram", True, True, 0.9999, -1)
    held = report["heldout"]
    text_bytes = len("The miller counted 40 candles.老师告诉我们要认真思考。".encode())
    tokens = sum(len(tok.encode(t)) for t in iter_texts(sample[1]))
    assert (held["bytes"], held["tokens"]) == (text_bytes, tokens)
    assert held["bytes_per_token"] == round(text_bytes / tokens, 4)


def test_user_defined_symbols_are_single_pieces(sample, tmp_path):
    symbols = ["<|im_start|>", "<|im_end|>"]
    report = train_tokenizer([sample[0]], tmp_path / "tok", SAMPLE_VOCAB,
                             user_defined_symbols=symbols)
    tok = Tokenizer(tmp_path / "tok.model")
    assert [tok.id_to_piece(i) for i in (3, 4)] == symbols
    assert report["settings"]["user_defined_symbols"] == symbols
    text = "<|im_start|>user\nHello<|im_end|>"
    assert {3, 4} <= set(tok.encode(text)) and tok.decode(tok.encode(text)) == text


def test_sample_cap(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text((ENGLISH + CHINESE + CODE) * 10, encoding="utf-8")
    report = train_tokenizer([lines], tmp_path / "tok", SAMPLE_VOCAB, sample_cap=150,
                             allow_smaller_vocab=True)
    assert (report["lines_sampled"], report["settings"]["input_sentence_size"]) == (150, 150)
    assert report["lines_total"] == report["inputs"][0]["texts"] > 150
    with pytest.raises(TokenizerError, match="--sample-cap 100 must be more than 100 lines"):
        train_tokenizer([lines], tmp_path / "tok2", SAMPLE_VOCAB, sample_cap=100)


def test_missing_or_broken_model_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer model .*nope.model does not exist"):
        Tokenizer(tmp_path / "nope.model")
    (tmp_path / "broken.model").write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="cannot load tokenizer model .*broken.model"):
        Tokenizer(tmp_path / "broken.model")


# ---------------------------------------------------------------- reading and cutting inputs

def test_iter_texts_reads_jsonl_keys_and_text_lines(tmp_path):
    sft = _write_jsonl(tmp_path / "sft.jsonl",
                       [{"prompt": "p1", "response": "r1"}, {"prompt": "p2"}])
    assert list(iter_texts(sft, ("prompt", "response"))) == ["p1", "r1", "p2"]
    plain = tmp_path / "plain.txt"
    plain.write_text("one\n\n  two\r\n", encoding="utf-8")
    assert list(iter_texts(plain)) == ["one", "  two"]


def test_training_lines_fit_sentencepiece():
    assert list(training_lines("    indented  \n\n\tb\n")) == ["    indented", "\tb"]
    english = " ".join(f"Sentence number {i} is here." for i in range(500))
    chinese = "今天天气很好。" * 800
    for line, joiner in ((english, " "), (chinese, ""), ("x" * 10_000, ""), ("é" * 5_000, "")):
        chunks = list(training_lines(line))
        assert len(chunks) > 1
        assert all(len(c.encode("utf-8")) <= MAX_SENTENCE_BYTES for c in chunks)
        assert joiner.join(chunks) == line


# ---------------------------------------------------------------- what the text cannot give

def test_too_large_vocabulary_says_what_to_do(sample, tmp_path, monkeypatch, capsys):
    code, _, err = run_tool(monkeypatch, capsys, "--input", sample[0], "--model-prefix",
                            tmp_path / "tok", "--vocab-size", 5000)
    assert code == 2 and err.count("\n") == 1
    assert "too little varied text for a 5,000-piece vocabulary" in err
    assert "--allow-smaller-vocab" in err and "or smaller" in err
    assert list(tmp_path.iterdir()) == []


def test_allow_smaller_vocab_reports_what_it_got(sample, tmp_path, monkeypatch, capsys):
    code, out, _ = run_tool(monkeypatch, capsys, "--input", sample[0], "--model-prefix",
                            tmp_path / "tok", "--vocab-size", 5000, "--allow-smaller-vocab")
    report = json.loads(report_path(tmp_path / "tok").read_text())
    assert code == 0 and "warning: the text gave only" in out
    assert SAMPLE_VOCAB <= report["vocab_size"] < report["requested_vocab_size"] == 5000
    assert report["vocab_size"] == Tokenizer(tmp_path / "tok.model").vocab_size


def test_vocabulary_below_the_character_count(sample, tmp_path):
    with pytest.raises(TokenizerError, match=r"--vocab-size 400 is below the \d+ pieces"):
        train_tokenizer([sample[0]], tmp_path / "tok", 400)


# ---------------------------------------------------------------- bad input

BAD_INPUTS = [
    ("missing.jsonl", None, r"input file \S*missing.jsonl does not exist"),
    ("empty.jsonl", "", r"input \S*empty.jsonl holds no text under 'text'"),
    ("blank.txt", "\n  \n", r"input \S*blank.txt holds no text$"),
    ("bad.jsonl", '{"text": "ok"}\n{"text": oops}\n',
     r"bad.jsonl:2: invalid JSON: Expecting value \(column 10\)"),
    ("nokey.jsonl", '{"text": "a"}\n\n{"body": "b"}\n',
     r"nokey.jsonl:3: record has no 'text' key \(it has 'body'; choose with --json-keys\)"),
    ("list.jsonl", "[1, 2]\n", r"list.jsonl:1: expected a JSON object, got list"),
    ("number.jsonl", '{"text": 5}\n', r"number.jsonl:1: 'text' is int, expected a string"),
    ("latin1.txt", b"caf\xe9\n", r"latin1.txt:1: not valid UTF-8"),
]


@pytest.mark.parametrize("name, content, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_error_line_and_exit_2(name, content, message, sample, tmp_path,
                                                monkeypatch, capsys):
    bad = tmp_path / name
    if content is not None:
        (bad.write_bytes if isinstance(content, bytes) else bad.write_text)(content)
    out = tmp_path / "out"
    code, _, err = run_tool(monkeypatch, capsys, "--input", sample[0], bad,
                            "--model-prefix", out / "tok", "--vocab-size", SAMPLE_VOCAB)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err.strip()), err
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_heldout_fails_before_training(sample, tmp_path):
    with pytest.raises(TokenizerError, match="held-out file .*nope.txt does not exist"):
        train_tokenizer([sample[0]], tmp_path / "tok", SAMPLE_VOCAB, heldout=tmp_path / "nope.txt")
    assert list(tmp_path.iterdir()) == []


def test_failed_run_keeps_the_previous_model(trained, tmp_path):
    prefix, report, _ = trained
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"body": "x"}])
    with pytest.raises(TokenizerError, match="record has no 'text' key"):
        train_tokenizer([bad], prefix, SAMPLE_VOCAB, overwrite=True)
    assert Tokenizer(f"{prefix}.model").sha256 == report["sha256"]
    assert json.loads(report_path(prefix).read_text()) == report
    assert len(list(prefix.parent.iterdir())) == 3


# ---------------------------------------------------------------- existing outputs

def _contents(prefix) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(prefix).parent.iterdir()}


def test_existing_model_is_refused_before_any_work(trained, sample, monkeypatch, capsys):
    prefix, report, _ = trained
    before = _contents(prefix)

    def no_work(*args, **kwargs):
        raise AssertionError("inputs were read before the existing outputs were checked")

    monkeypatch.setattr("xm2_megatron.data.tokenizer.write_training_lines", no_work)
    code, _, err = run_tool(monkeypatch, capsys, "--input", sample[0], "--model-prefix", prefix,
                            "--vocab-size", SAMPLE_VOCAB)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    for suffix in (".model", ".vocab", ".report.json"):
        assert f"{prefix}{suffix}" in err
    assert "already exist: pass --overwrite to replace them, or choose another" in err
    assert _contents(prefix) == before


def test_one_existing_file_is_enough_to_refuse(sample, tmp_path):
    (tmp_path / "tok.vocab").write_text("someone else's")
    with pytest.raises(TokenizerError, match=r"tok\.vocab already exists: pass --overwrite to "
                                             r"replace it, or choose another --model-prefix"):
        train_tokenizer([sample[0]], tmp_path / "tok", SAMPLE_VOCAB)
    assert _contents(tmp_path / "tok") == {"tok.vocab": b"someone else's"}


def test_overwrite_replaces_the_outputs(trained, sample, tmp_path, monkeypatch, capsys):
    old_prefix, old_report, _ = trained
    for p in old_prefix.parent.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    prefix = tmp_path / "tokenizer"
    code, _, _ = run_tool(monkeypatch, capsys, "--input", sample[0], "--model-prefix", prefix,
                          "--vocab-size", SAMPLE_VOCAB, "--user-defined-symbols", "<|x|>",
                          "--overwrite")
    assert code == 0
    report = json.loads(report_path(prefix).read_text())
    assert report["sha256"] != old_report["sha256"]
    assert report["sha256"] == Tokenizer(f"{prefix}.model").sha256
    assert Tokenizer(f"{prefix}.model").id_to_piece(3) == "<|x|>"
    assert Path(f"{prefix}.vocab").read_text().splitlines()[3].startswith("<|x|>")
    assert sorted(_contents(prefix)) == sorted(p.name for p in old_prefix.parent.iterdir())


def test_cli_entry_point(tmp_path):
    result = subprocess.run([sys.executable, str(TOOL), "--input", str(tmp_path / "none.txt"),
                             "--model-prefix", str(tmp_path / "tok")],
                            capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 2
    assert result.stderr == f"error: input file {tmp_path / 'none.txt'} does not exist\n"


# ---------------------------------------------------------------- the real demo corpora

@pytest.fixture(scope="module")
def demo_sample(tmp_path_factory):
    """~300 KB of the demo corpora: every 40th record of english/chinese/code, 100 KB each."""
    files = [DEMO / name for name in ("english.jsonl", "chinese.jsonl", "code.jsonl")]
    if not all(f.is_file() for f in files):
        pytest.skip(f"demo corpora not in {DEMO}; run scripts/fetch_demo_data.sh")
    out = tmp_path_factory.mktemp("demo") / "sample.jsonl"
    with open(out, "w", encoding="utf-8") as w:
        for path in files:
            size = 0
            with open(path, encoding="utf-8") as f:
                for i, line in enumerate(f):
                    if i % 40 == 0 and size < 100_000:
                        w.write(line)
                        size += len(line.encode())
    return out


def test_trains_on_the_demo_corpora(demo_sample, tmp_path):
    ptb = DEMO / "ptb_test.txt"
    report = train_tokenizer([demo_sample], tmp_path / "tok", DEMO_VOCAB,
                             heldout=ptb if ptb.is_file() else None)
    tok = Tokenizer(tmp_path / "tok.model")
    assert tok.vocab_size == report["vocab_size"] == DEMO_VOCAB
    held_lines = [t for path in ("english.jsonl", "chinese.jsonl", "code.jsonl")
                  for t in list(iter_texts(DEMO / path))[1].split("\n")[:20]]
    assert all(tok.decode(tok.encode(line)) == line for line in held_lines)
    if report["heldout"]:
        assert 1.5 < report["heldout"]["bytes_per_token"] < 5.0
