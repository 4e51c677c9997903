"""Read back what W&B wrote for an offline run: its ``.wandb`` transaction log.

The file is a LevelDB-style log (7-byte header ``:W&B`` + magic + version, 32 KiB blocks of
records ``crc32 | length | type`` with FULL/FIRST/MIDDLE/LAST fragments) of protobuf
``wandb.proto.wandb_internal_pb2.Record`` messages; this is what ``wandb sync`` uploads.
"""
import glob
import json
import os
import struct

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def offline_runs(output_dir):
    """The offline run folders W&B created under ``output_dir``."""
    return sorted(glob.glob(os.path.join(output_dir, "wandb", "offline-run-*")))


def _records(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # zero padding up to the block end
            pos += left
            continue
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            yield payload
        elif kind == _FIRST:
            pending = payload
        elif kind == _MIDDLE:
            pending += payload
        elif kind == _LAST:
            yield pending + payload


def _set_nested(row, path, value):
    """Media (images) are logged as nested keys (``val_predictions`` -> ``_type``, ...)."""
    for key in path[:-1]:
        row = row.setdefault(key, {})
    row[path[-1]] = value


def read_run(run_dir):
    """Parse one run folder.

    Returns:
        dict: ``history`` (list of {key: value} rows, values JSON-decoded), ``config`` (dict of
        the top-level config keys), ``exit_code`` (int or None), ``run_id``.
    """
    path = glob.glob(os.path.join(run_dir, "*.wandb"))[0]
    out = {"history": [], "config": {}, "exit_code": None, "run_id": None}
    for payload in _records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {}
            for item in record.history.item:
                _set_nested(row, [item.key] if item.key else list(item.nested_key),
                            json.loads(item.value_json))
            out["history"].append(row)
        elif kind == "run":
            out["run_id"] = record.run.run_id
            for item in record.run.config.update:
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
