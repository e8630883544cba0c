"""xm2-train-tokenizer on a full disk: one error line, exit 2, nothing left behind."""

import sys

from tests.full_disk import error_lines, needs_namespaces, run_on_full_disk
from tests.launch import REPO

TOOL = REPO / "tools" / "train_tokenizer.py"


@needs_namespaces
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    corpus = tmp_path / "text.txt"  # 3 KB of text: the training lines fit, the model does not
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n"
                              for i in range(50)))
    disk = tmp_path / "disk"
    result, left = run_on_full_disk(disk, "12k", [
        sys.executable, TOOL, "--input", corpus, "--model-prefix", disk / "tok",
        "--vocab-size", 300, "--allow-smaller-vocab", "--threads", "1"], cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [f"error: no space left on device in {disk}: tok.model was "
                                   "not written (the temporary files are removed)"], result.stderr
    assert "Traceback" not in result.stderr and left == []
