"""SFT formatting: the documented template for each input shape, categories, rewrites, the CLI."""

import io
import json
import os
import subprocess
import sys

import pytest
import sentencepiece as spm

from xm2_megatron.data.jsonl import DataError
from xm2_megatron.data.sft import (
    CATEGORIES,
    REWRITES,
    categorize,
    format_file,
    render_example,
    rewrite_for,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROMPT_RESPONSE = {"prompt": "What is 2 + 2?", "response": "2 + 2 = 4."}
ALPACA = {"instruction": "Add the two numbers.", "input": "3 and 5", "output": "3 + 5 = 8."}
CHAT = {"messages": [
    {"role": "system", "content": "You are a careful tutor."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": " And times 3?\n"},
    {"role": "assistant", "content": "4 x 3 = 12."},
]}


def test_prompt_response_template():
    assert render_example(PROMPT_RESPONSE) == "<|user|>\nWhat is 2 + 2?\n<|assistant|>\n2 + 2 = 4."
    assert render_example({**PROMPT_RESPONSE, "system": "Be brief."}) == (
        "<|system|>\nBe brief.\n<|user|>\nWhat is 2 + 2?\n<|assistant|>\n2 + 2 = 4.")


def test_alpaca_template():
    assert render_example(ALPACA) == (
        "<|user|>\nAdd the two numbers.\n\n3 and 5\n<|assistant|>\n3 + 5 = 8.")
    assert render_example({**ALPACA, "input": ""}) == (
        "<|user|>\nAdd the two numbers.\n<|assistant|>\n3 + 5 = 8.")


def test_multi_turn_chat_template_keeps_order():
    assert render_example(CHAT) == (
        "<|system|>\nYou are a careful tutor.\n"
        "<|user|>\nWhat is 2 + 2?\n<|assistant|>\n4.\n"
        "<|user|>\nAnd times 3?\n<|assistant|>\n4 x 3 = 12.")


def test_template_survives_a_sentencepiece_round_trip():
    """With the project tokenizer's settings (identity normalization, whitespace kept, byte
    fallback) the markers, newlines and unseen characters decode back exactly."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["<|user|>", "<|assistant|>", "What is 2 + 2?"] * 30),
        model_writer=model, vocab_size=300, hard_vocab_limit=False, model_type="unigram",
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        byte_fallback=True, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    text = render_example({**CHAT, "messages": CHAT["messages"] + [
        {"role": "user", "content": "茶  two  spaces"}, {"role": "assistant", "content": "好"}]})
    assert sp.decode(sp.encode(text)) == text


@pytest.mark.parametrize("record, problem", [
    ({"text": "no shape"}, "expected 'messages', 'prompt' + 'response'"),
    ({"prompt": "x"}, "'response' must be a string, got nothing"),
    ({"prompt": "x", "response": "  "}, "a assistant turn is empty"),
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0] must be an object"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "then user and assistant alternating"),
    ({"messages": CHAT["messages"][:4]}, "ending with assistant"),
])
def test_malformed_records_are_rejected(record, problem):
    with pytest.raises(DataError, match=problem.replace("[", r"\[").replace("+", r"\+")):
        render_example(record)


def test_categories_by_each_rule():
    assert CATEGORIES == ("mathematics", "code", "logic", "knowledge", "commonsense")
    assert categorize({"category": "code"}) == "code"
    assert categorize({"category": "Math"}) == "mathematics"  # field values go through the rules
    assert categorize({"kind": "logic"}, category_field="kind") == "logic"
    for source, category in [("openai/gsm8k", "mathematics"), ("MATH", "mathematics"),
                             ("mbpp", "code"), ("openai_humaneval", "code"),
                             ("ise-uiuc/Magicoder-OSS-Instruct", "code"),
                             ("chain-of-thought", "logic"), ("flan_cot", "logic"),
                             ("logiqa", "logic"), ("wiki_qa", "knowledge"),
                             ("commonsense_qa", "commonsense")]:
        assert categorize({"source": source}) == category, source
    assert categorize({}, source="gsm8k") == "mathematics"  # a source given by the caller
    assert categorize({"source": "scotland"}, "knowledge") == "knowledge"  # "cot" is no word here
    assert categorize({"category": "poetry"}, "knowledge") == "knowledge"
    with pytest.raises(DataError, match="unknown category 'poetry'"):
        categorize({"category": "poetry"})
    with pytest.raises(DataError, match="no rule maps source 'ultrachat'"):
        categorize({"source": "ultrachat"})


def test_diversification_is_deterministic_varied_and_switchable():
    prompts = [f"Compute {i} + {i + 1}." for i in range(40)]
    chosen = [rewrite_for(p)[0] for p in prompts]
    assert set(chosen) == {name for name, _ in REWRITES}
    assert chosen == [rewrite_for(p)[0] for p in prompts]
    for prompt in prompts:
        record = {"prompt": prompt, "response": "ok"}
        template = rewrite_for(prompt)[1]
        assert render_example(record, diversify=True) == (
            f"<|user|>\n{template.format(prompt=prompt)}\n<|assistant|>\nok")
        assert render_example(record) == f"<|user|>\n{prompt}\n<|assistant|>\nok"
    chat = render_example(CHAT, diversify=True)  # only the first user turn is rewritten
    assert chat.endswith("<|user|>\nAnd times 3?\n<|assistant|>\n4 x 3 = 12.")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_format_file_counts_and_stats(tmp_path):
    gsm8k = write_jsonl(tmp_path / "gsm8k.jsonl", [PROMPT_RESPONSE, ALPACA])
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [
        {**CHAT, "category": "logic"}, {**PROMPT_RESPONSE, "source": "mbpp"},
        {**PROMPT_RESPONSE, "source": "ultrachat"}])
    counts = format_file([gsm8k, mixed], tmp_path / "out.jsonl", default_category="knowledge",
                         diversify=False)
    assert counts == {"mathematics": 2, "code": 1, "logic": 1, "knowledge": 1, "commonsense": 0}
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[0] == {"text": render_example(PROMPT_RESPONSE), "category": "mathematics",
                        "source": "gsm8k"}
    assert [(r["category"], r["source"]) for r in lines[2:]] == [
        ("logic", "mixed"), ("code", "mbpp"), ("knowledge", "ultrachat")]
    stats = json.loads((tmp_path / "out.stats.json").read_text())
    assert stats["categories"] == counts and stats["records"] == 5
    assert stats["sources"] == {"gsm8k": 2, "mbpp": 1, "mixed": 1, "ultrachat": 1}
    assert stats["rewrites"] == {} and stats["diversify"] is False


def run_tool(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "format_sft.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_formats_with_diversification(tmp_path):
    path = write_jsonl(tmp_path / "metamath.jsonl", [PROMPT_RESPONSE, ALPACA])
    result = run_tool("--input", str(path), "--output", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "2 records: mathematics 2, code 0, logic 0, knowledge 0, commonsense 0" in result.stdout
    stats = json.loads((tmp_path / "out.stats.json").read_text())
    assert stats["diversify"] is True and sum(stats["rewrites"].values()) == 2


def test_cli_unknown_category_names_the_line(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [{**PROMPT_RESPONSE, "category": "code"},
                                                  {**PROMPT_RESPONSE, "category": "poetry"}])
    result = run_tool("--input", str(path), "--output", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:2: unknown category 'poetry'")
    assert result.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["mixed.jsonl"]
