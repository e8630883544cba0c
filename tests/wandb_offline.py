"""Reading what an offline W&B run wrote, and keeping tests away from the machine's W&B setup."""

import json
import struct
import time

WANDB_ENV = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL",
             "WANDB_DIR", "WANDB_CONSOLE")


def isolate_wandb(monkeypatch, tmp_path) -> None:
    """No W&B credentials or mode from the machine; W&B's home folders under ``tmp_path``."""
    for name in WANDB_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for folder in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"WANDB_{folder}_DIR", str(tmp_path / f"wandb-{folder.lower()}"))


def wandb_records(path):
    """Protobuf records of a ``.wandb`` transaction log (LevelDB log format: 32 KiB blocks of
    chunks with a 7-byte header crc32/length/type; wandb 0.31 ships no Python reader); a log
    still being written yields its complete records."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if len(data) < 7:  # not written yet
        return
    assert data[:4] == b":W&B"
    pos, block, chunk = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if pos + 7 + length > len(data):  # a chunk still being written
            return
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            yield wandb_internal_pb2.Record.FromString(chunk)
            chunk = b""


def offline_runs(run_dir, run_id, timeout_s: float = 60.0):
    """History rows ({key: value}) and config ({key: value}) of every offline run of ``run_id``
    under ``run_dir/wandb``, oldest first. ``run.finish()`` can return before wandb-core has
    flushed the log, so each log is read once it holds its exit record (within ``timeout_s``)."""
    runs = []
    for directory in sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}")):
        records = _finished_records(directory / f"run-{run_id}.wandb", timeout_s)
        history, config = [], {}
        for record in records:
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                                for i in record.history.item})
            elif kind == "run":
                config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "config":  # config sent after the run record
                config.update({u.key: json.loads(u.value_json) for u in record.config.update})
        runs.append((history, config))
    return runs


def _finished_records(path, timeout_s: float) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(wandb_records(path)) if path.exists() else []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout_s:.0f} s"
        time.sleep(0.2)
