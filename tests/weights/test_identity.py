"""One encoder, one name: identity = weights hash + feature metadata, not the file name."""

from __future__ import annotations

from pathlib import Path

from clrbench.records import Record, write_record
from clrbench.weights.identity import (
    identity_key,
    known_checkpoint_id,
    pick_canonical,
    read_aliases,
)

META = {"sha256": "ab" * 32, "arch": "resnet18", "width": 1, "stem": "cifar", "input_range": [0, 1], "mean": None}


def test_identity_ignores_names_and_number_types_but_not_feeding() -> None:
    same = {**META, "path": "elsewhere/last.pt", "kind": "safetensors", "width": 1.0, "input_range": [0.0, 1.0],
            "run": "qs", "step": 230}
    assert identity_key(META) == identity_key(same)
    assert identity_key({**META, "mean": [0.485, 0.456, 0.406]}) != identity_key(META)  # fed differently
    assert identity_key({**META, "conv1_padding": 2}) != identity_key(META)
    assert identity_key({"path": "x"}) is None  # a failed record has no hash


def test_pick_canonical_is_stable() -> None:
    assert pick_canonical(["qs-step_1-ab", "qs-ab", "qs-step_1-ab"]) == "qs-step_1-ab"  # most records
    assert pick_canonical(["zz-ab", "qs-ab"]) == pick_canonical(["qs-ab", "zz-ab"]) == "qs-ab"


class _Enc:
    def __init__(self, cid: str) -> None:
        self.checkpoint_id = cid

    def describe(self) -> dict:
        return dict(META)


def test_known_checkpoint_id_reuses_the_recorded_name(tmp_path: Path) -> None:
    assert known_checkpoint_id(_Enc("qs-abababab"), tmp_path) == "qs-abababab"  # nothing recorded yet
    write_record(tmp_path, Record("qs-abababab", "digits", "linear", "top1", "ok", 50.0, 0.5, 1, 1, dict(META), {}, [],
                                  {}, {}, {}, "s", {}, {}))
    assert known_checkpoint_id(_Enc("exported-abababab"), tmp_path) == "qs-abababab"
    assert read_aliases(tmp_path) == {"qs-abababab": ["exported-abababab"]}
