"""Records of one encoder under several names become one row; failed records stay apart."""

from __future__ import annotations

from clrbench.leaderboard import board as lb
from clrbench.leaderboard.merge import merge_identities
from clrbench.records import Record

CK = {"sha256": "cd" * 32, "arch": "resnet18", "width": 0.25, "stem": "cifar"}


def _r(cid: str, task: str, value: float | None, status: str = "ok", ck: dict | None = None) -> Record:
    return Record(
        cid,
        task,
        "linear",
        "top1",
        status,
        value,
        0.5 if value else None,
        1,
        1,
        ck if ck is not None else dict(CK),
        {},
        [],
        {},
        {},
        {},
        "s",
        {},
        {},
        error=None if status == "ok" else "x",
    )


def test_three_names_of_one_encoder_are_one_row_with_aliases() -> None:
    recs = [_r("quickstart-cdcdcdcd", "digits", 60.0), _r("quickstart-cdcdcdcd", "shapes", 30.0),
            _r("quickstart-step_0000230-cdcdcdcd", "digits", 60.0), _r("qs-cdcdcdcd", "scenes", 40.0),
            _r("other", "digits", 10.0, ck={**CK, "sha256": "ef" * 32})]
    merged, aliases = merge_identities(recs, {"quickstart-cdcdcdcd": ["renamed.safetensors"]})
    assert sorted((r.checkpoint_id, r.task) for r in merged) == [
        ("other", "digits"), ("quickstart-cdcdcdcd", "digits"), ("quickstart-cdcdcdcd", "scenes"),
        ("quickstart-cdcdcdcd", "shapes")]
    assert aliases["quickstart-cdcdcdcd"] == ("qs-cdcdcdcd", "quickstart-step_0000230-cdcdcdcd", "renamed.safetensors")
    board = lb.build_board(recs, [], "linear", baseline="qs")  # an alias names its row
    assert [r.label for r in board.rows] == ["quickstart-cdcdcdcd", "other"]
    assert board.baseline == "quickstart-cdcdcdcd" and board.rows[0].mean_rank == 1.0


def test_an_ok_record_wins_over_a_failed_one_of_the_same_weights() -> None:
    recs = [_r("a-cdcdcdcd", "digits", None, status="failed", ck={"path": "a"}), _r("a-cdcdcdcd", "shapes", 20.0),
            _r("b-cdcdcdcd", "digits", 55.0)]
    merged, _ = merge_identities(recs)
    by_task = {r.task: r for r in merged if r.checkpoint_id == "a-cdcdcdcd"}
    assert by_task["digits"].status == "ok" and by_task["digits"].value == 55.0
