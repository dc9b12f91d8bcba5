"""One row per encoder: records of the same weights under several names become one row.

Records written before an encoder's names were unified (``quickstart-a1482530``,
``quickstart-step_0000230-a1482530`` and ``qs-a1482530`` for one set of weights) share an
identity (:func:`clrbench.weights.identity.identity_key`): the board shows them as one row
under one name, the others listed as its aliases, so they never split the ranks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from clrbench.records import Record
from clrbench.weights.identity import identity_key, pick_canonical


def merge_identities(records: Sequence[Record], aliases: Mapping[str, Sequence[str]] | None = None
                     ) -> tuple[list[Record], dict[str, tuple[str, ...]]]:
    """Records renamed to one id per identity, one per (id, task, protocol), and the aliases.

    Of two records of one encoder on one (task, protocol), an ``ok`` one wins, then the one
    already under the chosen name (they measure the same weights, so either value is right).

    Returns:
        (the records, checkpoint id -> its other names, sorted).
    """
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        key = identity_key(r.checkpoint) if r.status == "ok" else None
        groups[key or f"id:{r.checkpoint_id}"].append(r)
    rename: dict[str, str] = {}
    # Identity groups first: a failed record (no hash) follows the name its weights' ok records got.
    for _, recs in sorted(groups.items(), key=lambda kv: kv[0].startswith("id:")):
        ids = [r.checkpoint_id for r in recs]
        canonical = pick_canonical(ids)
        rename.update({i: canonical for i in ids if i not in rename})
    out: dict[tuple[str, str, str], tuple[Record, str]] = {}  # slot -> (renamed record, its own id)
    twins: list[Record] = []
    for r in records:
        cid = rename.get(r.checkpoint_id, r.checkpoint_id)
        slot = (cid, r.task, r.protocol)
        old = out.get(slot)
        if old is not None and old[1] == r.checkpoint_id:
            twins.append(r)  # two records under one name: the board refuses those, not us
            continue
        if old is None or _better(r, old[0], old[1] == cid, cid):
            out[slot] = (r if cid == r.checkpoint_id else replace(r, checkpoint_id=cid), r.checkpoint_id)
    names: dict[str, set[str]] = defaultdict(set)
    for i, c in rename.items():
        if i != c:
            names[c].add(i)
    for cid, extra in (aliases or {}).items():
        names[rename.get(cid, cid)].update(a for a in extra if a != rename.get(cid, cid))
    return [r for r, _ in out.values()] + twins, {k: tuple(sorted(v)) for k, v in names.items() if v}


def _better(r: Record, old: Record, old_is_canonical: bool, cid: str) -> bool:
    """Whether ``r`` should replace ``old`` in the slot of ``cid``: ok first, then the record
    already under the chosen name."""
    if (r.status == "ok") != (old.status == "ok"):
        return r.status == "ok"
    return r.checkpoint_id == cid and not old_is_canonical


def lookup(label: str, aliases: Mapping[str, Sequence[str]]) -> str:
    """The row label an alias belongs to (the label itself when it is no alias)."""
    for cid, names in aliases.items():
        if label in names:
            return cid
    return label
