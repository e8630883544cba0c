"""``bash slurm/preprocess.sh 3 ...`` on the real (local) Slurm: a three-task array tokenizes the
shards, the merge job runs after them, and the merged dataset is byte-identical to one
``preprocess`` run over the same inputs in the same order."""

import json
import re
import subprocess
import sys

from tests.launch import REPO
from tests.slurm.jobs import job_info, wait_job
from xm2_megatron.data.preprocess import preprocess, read_dataset_metadata
from xm2_megatron.data.tokenizer import train_tokenizer

TEXTS = ("The river rose after the storm and the bridge was closed for a week. ",
         "def mean(values):\n    return sum(values) / len(values)\n",
         "Question: 7 boxes of 6 eggs. How many eggs? Answer: 7 * 6 = 42. ")


def test_array_then_merge_equals_one_run(slurm, tmp_path):
    (tmp_path / "all.txt").write_text("\n".join(t * 4 for t in TEXTS) * 30)
    train_tokenizer([tmp_path / "all.txt"], tmp_path / "tok", vocab_size=300,
                    allow_smaller_vocab=True)
    inputs = []
    for part in range(5):
        inputs.append(tmp_path / f"part{part}.jsonl")
        inputs[-1].write_text("".join(json.dumps({"text": f"{i} " + TEXTS[(i + part) % 3] * (1 + i % 5)})
                                      + "\n" for i in range(200)))
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(map(str, inputs)) + "\n")
    flags = ["--input-list", str(listing), "--output-prefix", str(tmp_path / "out" / "corpus"),
             "--tokenizer-model", str(tmp_path / "tok.model"), "--append-eod"]
    env = {**slurm.env, "XM2_PYTHON": sys.executable,
           "XM2_SBATCH_ARGS": f"--cpus-per-task=1 --output={tmp_path}/%x-%A_%a.out"}
    submitted = subprocess.run(["bash", "slurm/preprocess.sh", "3", *flags], cwd=REPO, env=env,
                               capture_output=True, text=True, check=False)
    assert submitted.returncode == 0, submitted.stderr
    array, merge = re.fullmatch(r"submitted: shards (\d+) \(array 0-2\), merge (\d+) .*\n",
                                submitted.stdout).groups()
    info, _ = wait_job(slurm, merge, timeout=240)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("*.out")))
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), logs[-3000:]
    tasks = [job_info(slurm, f"{array}_{i}") for i in range(3)]
    assert all(t["JobState"] == "COMPLETED" for t in tasks), logs[-3000:]
    assert all(f"shard {i} of 3" in logs for i in range(3))

    preprocess(inputs, str(tmp_path / "one" / "corpus"), str(tmp_path / "tok.model"),
               append_eod=True)
    merged, one = tmp_path / "out" / "corpus_text_document", tmp_path / "one" / "corpus_text_document"
    for ext in (".bin", ".idx"):
        assert merged.with_suffix(ext).read_bytes() == one.with_suffix(ext).read_bytes()
    meta = read_dataset_metadata(str(merged))
    assert [e["path"] for e in meta["inputs"]] == [str(p) for p in inputs]
    assert meta["documents"] == 1000 and len(meta["merged_from"]) == 3
