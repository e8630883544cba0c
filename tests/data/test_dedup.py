"""Exact and SimHash deduplication (and what both methods share): what is removed, what is
kept, buckets, rounds, the CLI. MinHash specifics: test_dedup_minhash.py."""

import gzip
import json
import os
import random
import subprocess
import sys

import pytest

from xm2_megatron.data.dedup import (
    METHODS,
    block_spans,
    bucket_of,
    dedup_files,
    hamming,
    normalize,
    shingles,
    simhash,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PHOTOSYNTHESIS = (
    "Photosynthesis is the process by which green plants, algae and some bacteria turn light "
    "into chemical energy. It takes place mostly in the leaves, inside small structures called "
    "chloroplasts, which contain the green pigment chlorophyll. Chlorophyll absorbs red and blue "
    "light and reflects green light, which is why leaves look green to us. During the light "
    "reactions, energy from sunlight splits water molecules, releasing oxygen as a by-product and "
    "storing energy in two carrier molecules, ATP and NADPH. In the second stage, known as the "
    "Calvin cycle, the plant uses that stored energy to fix carbon dioxide from the air into "
    "three-carbon sugars. These sugars are later combined into glucose, sucrose and starch, which "
    "the plant burns for energy or uses to build cellulose for its cell walls. The overall "
    "reaction can be summarised as six molecules of carbon dioxide plus six molecules of water, "
    "with light, giving one molecule of glucose and six molecules of oxygen. Almost all life on "
    "Earth depends on this process, directly or indirectly, because it supplies both the oxygen "
    "we breathe and the organic matter at the base of nearly every food chain. The rate of "
    "photosynthesis depends on light intensity, temperature and the concentration of carbon "
    "dioxide, and whichever of these is in shortest supply limits the whole process."
)
RESPIRATION = (  # same topic as PHOTOSYNTHESIS, a different document
    "Cellular respiration is the process by which cells break down glucose to release the energy "
    "stored in its chemical bonds. Unlike photosynthesis, which builds sugars using light, "
    "respiration runs in every living cell, day and night, in plants as well as animals. It "
    "begins in the cytoplasm with glycolysis, where one glucose molecule is split into two "
    "molecules of pyruvate, yielding a small amount of ATP. When oxygen is available, pyruvate "
    "enters the mitochondria, where the citric acid cycle strips it of electrons that are passed "
    "along the electron transport chain. The flow of electrons pumps protons across the inner "
    "mitochondrial membrane, and the protons flowing back through the enzyme ATP synthase drive "
    "the production of most of the cell's ATP. Oxygen is the final electron acceptor and combines "
    "with hydrogen to form water, while the carbon atoms of the sugar leave as carbon dioxide. "
    "Without oxygen, many cells fall back on fermentation, which regenerates the molecules needed "
    "for glycolysis but produces far less energy and leaves lactic acid or ethanol behind. In "
    "summary, respiration is roughly photosynthesis in reverse: glucose and oxygen go in, and "
    "carbon dioxide, water and usable energy come out."
)
PYTHON_LISTS = (
    "A list in Python is an ordered, mutable collection that can hold items of any type. You "
    "create one with square brackets, for example numbers = [3, 1, 4, 1, 5], and read an item by "
    "its position, counting from zero, so numbers[0] is 3 and numbers[-1] is the last element. "
    "Lists grow and shrink as you work with them: append adds one item at the end, extend adds "
    "every item of another iterable, insert puts an item at a given position, and pop removes and "
    "returns an item, by default the last one. Because lists are mutable, two names can refer to "
    "the same list, and a change made through one name is visible through the other; use "
    "list(numbers) or numbers.copy() when you need an independent copy. Slicing returns a new "
    "list, so numbers[1:3] gives [1, 4] without changing the original. The sort method orders a "
    "list in place, while the built-in sorted function returns a new sorted list and leaves the "
    "input alone. List comprehensions such as [n * n for n in numbers if n > 1] build a new list "
    "from an existing iterable in a single readable expression. Appending to the end of a list is "
    "fast, but inserting or deleting near the front is slow for long lists, because every later "
    "element has to move; collections.deque is the better choice for queues."
)
ROME = (
    "The Roman Republic was founded, according to tradition, in 509 BC, when the last king of "
    "Rome was expelled and power passed to two consuls elected every year. The Senate, made up of "
    "former magistrates, advised the consuls and controlled the treasury and foreign policy, "
    "while popular assemblies voted on laws and elected officials. Over the next three centuries "
    "Rome expanded from a city state into the dominant power of the Mediterranean, defeating "
    "Carthage in the Punic Wars and conquering Greece, Spain and parts of North Africa. The "
    "wealth of these conquests, however, strained the republic's institutions. Large estates "
    "worked by slaves pushed small farmers off the land, and ambitious generals began to rely on "
    "armies that were loyal to them rather than to the state. The reforms of the Gracchi brothers "
    "ended in violence, and the rivalry between Marius and Sulla led to civil war. In the first "
    "century BC Julius Caesar crossed the Rubicon with his army, won another civil war and was "
    "named dictator for life, only to be assassinated in 44 BC. His adopted heir Octavian "
    "defeated Mark Antony and Cleopatra and, as Augustus, became the first emperor in 27 BC, "
    "bringing the republic to an end while keeping many of its forms."
)
TEA = (
    "茶是中国最古老的饮品之一，相传神农氏尝百草时发现了茶叶的解毒作用。唐代陆羽撰写了《茶经》，"
    "系统总结了茶的种植、采摘、制作和饮用方法，因此被后人尊为茶圣。中国的茶叶按照加工工艺大致可以分为"
    "绿茶、白茶、黄茶、青茶、红茶和黑茶六大类。绿茶不经过发酵，保留了较多的茶多酚和维生素，"
    "代表品种有西湖龙井和碧螺春；红茶经过充分发酵，汤色红亮，滋味醇厚，祁门红茶享誉世界。"
    "乌龙茶属于半发酵茶，兼有绿茶的清香和红茶的浓郁。饮茶讲究水质、水温和器具，"
    "古人认为山泉水最好，江水次之，井水最差。宋代盛行点茶和斗茶，明代以后逐渐改为直接冲泡散茶，"
    "这种方法一直沿用到今天。茶叶还通过丝绸之路和海上贸易传到世界各地，深刻影响了许多国家的饮食文化。"
)
SILK_ROAD = (  # shares topics and many characters with TEA
    "丝绸之路是古代连接中国与中亚、西亚乃至欧洲的陆上贸易通道，西汉时张骞出使西域为其开辟奠定了基础。"
    "商队从长安出发，经过河西走廊，穿越塔克拉玛干沙漠边缘的绿洲城市，再翻越帕米尔高原抵达中亚。"
    "沿途运输的不仅有丝绸，还有瓷器、茶叶、香料、宝石和马匹等商品。除了商品交换，"
    "丝绸之路也是文化交流的通道，佛教正是沿着这条道路从印度传入中国的，"
    "而中国的造纸术和火药等技术也经由这里传到西方。唐代是丝绸之路最繁荣的时期，"
    "长安城中聚集着来自各国的商人、僧侣和使节。宋代以后，随着航海技术的发展，"
    "海上丝绸之路逐渐取代了陆上通道的地位。"
)
DISTINCT = [PHOTOSYNTHESIS, RESPIRATION, PYTHON_LISTS, ROME, TEA, SILK_ROAD]


def edit(text, *replacements):
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new, 1)
    return text


ONE_WORD = edit(PHOTOSYNTHESIS, ("Almost all life", "Nearly all life"))
TWO_WORDS = edit(PYTHON_LISTS, ("is fast", "is quick"), ("single readable", "single clear"))
FOUR_WORDS = edit(ROME, ("ambitious generals", "ambitious commanders"), ("strained", "weakened"),
                  ("expanded", "grew"), ("advised", "counselled"))
SHOUTED = ROME.upper().replace(",", ";")  # case and punctuation: not exact, SimHash-identical
TEA_EDITED = edit(TEA, ("最差", "最次"), ("享誉世界", "闻名世界")).replace("，", ",")
RESPACED = "  " + RESPIRATION.replace(". ", ".\n\n") + "\t"  # exact after normalisation


def write_jsonl(path, texts, key="text"):
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": i, key: text}, ensure_ascii=False) + "\n")
    return str(path)


def read_texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def test_normalisation_and_chinese_shingles():
    assert normalize("ｆｕｌｌ\u3000width\n\n text ") == "full width text"
    assert shingles("Hello, World! Hello world.", 2) == {"hello world", "world hello"}
    assert shingles("中文没有空格。", 2) == {"中 文", "文 没", "没 有", "有 空", "空 格"}
    assert shingles("", 2) == set() and simhash("...") == 0


@pytest.mark.parametrize("method", METHODS)
def test_exact_and_near_duplicates_removed_distinct_kept(tmp_path, method):
    texts = DISTINCT + [ONE_WORD, TWO_WORDS, SHOUTED, TEA_EDITED, RESPACED, PYTHON_LISTS]
    report = dedup_files([write_jsonl(tmp_path / "in.jsonl", texts)], tmp_path / "out.jsonl",
                         method=method)
    assert read_texts(tmp_path / "out.jsonl") == DISTINCT
    assert report["documents"] == 12 and report["kept"] == 6
    assert report["exact_duplicates"] == 2  # RESPACED, the repeated PYTHON_LISTS
    assert report["near_duplicates"] == 4
    assert json.loads((tmp_path / "out.dedup.json").read_text())["kept"] == 6


def test_threshold_trades_recall_for_precision(tmp_path):
    """Four words changed in ~200 is beyond the default k=3 here, within k=7; distinct
    documents on one topic stay far apart (about half the bits differ)."""
    assert hamming(simhash(ROME), simhash(FOUR_WORDS)) > 3
    assert min(hamming(simhash(a), simhash(b)) for i, a in enumerate(DISTINCT)
               for b in DISTINCT[i + 1:]) > 16
    path = write_jsonl(tmp_path / "in.jsonl", DISTINCT + [FOUR_WORDS])
    assert dedup_files([path], tmp_path / "k3.jsonl", method="simhash")["kept"] == 7
    loose = dedup_files([path], tmp_path / "k7.jsonl", method="simhash", hamming_threshold=7)
    assert loose["kept"] == 6 and read_texts(tmp_path / "k7.jsonl") == DISTINCT


def test_buckets_split_near_duplicates_until_a_later_round(tmp_path):
    """With bucket size 1, two documents go to two buckets; round r buckets by bit block r, and
    ONE_WORD differs from PHOTOSYNTHESIS in block 0 only, so round 2 brings them together."""
    a, b = simhash(PHOTOSYNTHESIS), simhash(ONE_WORD)
    spans = block_spans(3)
    assert bucket_of(a, spans[0], 0, 2) != bucket_of(b, spans[0], 0, 2)
    assert bucket_of(a, spans[1], 1, 2) == bucket_of(b, spans[1], 1, 2)
    path = write_jsonl(tmp_path / "in.jsonl", [PHOTOSYNTHESIS, ONE_WORD])

    one_round = dedup_files([path], tmp_path / "r1.jsonl", bucket_size=1, rounds=1,
                            method="simhash")
    assert one_round["kept"] == 2 and one_round["rounds"][0]["buckets"] == 2

    rounds = dedup_files([path], tmp_path / "r4.jsonl", bucket_size=1, method="simhash")
    assert [r["near_duplicates"] for r in rounds["rounds"]] == [0, 1, 0]
    assert read_texts(tmp_path / "r4.jsonl") == [PHOTOSYNTHESIS]

    big = dedup_files([path], tmp_path / "big.jsonl", bucket_size=2, method="simhash")
    assert [(r["buckets"], r["near_duplicates"]) for r in big["rounds"]] == [(1, 1)]


def generated_corpus(n_base=150, seed=0):
    """Random-word documents, a third of them followed later by a one-word variant and some
    by an exact copy; returns the texts and the indices a single bucket keeps."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    texts = [" ".join(rng.choices(vocab, weights, k=rng.randint(100, 300))) for _ in range(n_base)]
    for i in range(0, n_base, 3):
        words = texts[i].split()
        words[rng.randrange(len(words))] = "changed"
        texts.append(" ".join(words))
    texts += texts[:n_base:7]
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order]


def test_rounds_find_what_one_bucket_finds_and_output_is_deterministic(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", generated_corpus())
    single = dedup_files([path], tmp_path / "single.jsonl", method="simhash")
    bucketed = dedup_files([path], tmp_path / "bucketed.jsonl", bucket_size=40, method="simhash")
    dedup_files([path], tmp_path / "again.jsonl", bucket_size=40, method="simhash")
    assert len(single["rounds"]) == 1 and bucketed["rounds"][0]["buckets"] == 6
    assert single["exact_duplicates"] == bucketed["exact_duplicates"] == 22
    assert single["near_duplicates"] == bucketed["near_duplicates"] >= 30
    assert sum(r["near_duplicates"] for r in bucketed["rounds"][1:]) > 0  # split in round 1
    out = (tmp_path / "single.jsonl").read_bytes()
    assert out == (tmp_path / "bucketed.jsonl").read_bytes()
    assert out == (tmp_path / "again.jsonl").read_bytes()
    ids = [json.loads(line)["id"] for line in out.decode().splitlines()]
    assert ids == sorted(ids) and len(ids) == single["kept"]
    for report in (single, bucketed):
        removed = report["exact_duplicates"] + report["near_duplicates"]
        assert report["documents"] == report["kept"] + removed
        assert report["near_duplicates"] == sum(r["near_duplicates"] for r in report["rounds"])


def test_exact_only_gzip_and_several_inputs(tmp_path):
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"body": PHOTOSYNTHESIS}) + "\n\n")
    second = write_jsonl(tmp_path / "b.jsonl", [ONE_WORD, PHOTOSYNTHESIS + " "], key="body")
    report = dedup_files([tmp_path / "a.jsonl.gz", second], tmp_path / "out.jsonl.gz",
                         json_key="body", exact_only=True)
    assert (report["exact_duplicates"], report["near_duplicates"], report["kept"]) == (1, 0, 2)
    with gzip.open(tmp_path / "out.jsonl.gz", "rt", encoding="utf-8") as f:
        assert [json.loads(line)["body"] for line in f] == [PHOTOSYNTHESIS, ONE_WORD]
    assert (tmp_path / "out.dedup.json").exists()


def run_tool(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "dedup.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_counts(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [ROME, SHOUTED, ROME])
    result = run_tool("--input", path, "--output", str(tmp_path / "out.jsonl"), "--method",
                      "simhash")
    assert result.returncode == 0, result.stderr
    assert ("3 documents -> 1 kept; removed 1 exact and 1 near duplicates (SimHash, Hamming "
            "distance <= 3;") in result.stdout


@pytest.mark.parametrize("bad_line, problem", [
    ('{"text": "unterminated}', "invalid JSON"),
    ('{"body": "no text key"}', "record has no 'text' field"),
    ('{"text": 42}', "record has a non-string 'text' field"),
])
def test_cli_bad_input_names_file_and_line(tmp_path, bad_line, problem):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"text": ROME}) + "\n\n" + bad_line + "\n")
    result = run_tool("--input", str(path), "--output", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:3: {problem}")
    assert result.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]  # no output, report or temporary files
