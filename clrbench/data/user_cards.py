"""User task cards: ``--tasks quick,./my_cards/,./flowers.yaml`` beside the shipped names.

A part of ``--tasks`` that names a ``.yaml`` file or a folder (anything with a path separator,
or starting with ``.`` or ``~``) is read as user cards, merged with the shipped ones (or those of
``--tasks-dir``); a user card whose name is already taken is one sentence. Paths inside a user
card (``source.args.path``, a local ``source.args.id`` or ``source.hub.id``) are relative to the
card's own folder, so a folder of cards and data can be moved or shared as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clrbench.config import ConfigError, read_yaml
from clrbench.data.cards import TaskCard, card_from_data, load_cards, select_tasks


def is_path(part: str) -> bool:
    """Whether a ``--tasks`` part names card files rather than a card or group."""
    return part.endswith((".yaml", ".yml")) or part.startswith((".", "~")) or "/" in part or "\\" in part


def _absolute(value: Any, folder: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    local = folder / p
    # A hub id ("owner/name") stays an id unless it is a folder next to the card.
    return str(local.resolve()) if (value.startswith(".") or local.exists()) else value


def load_user_card(path: str | Path) -> TaskCard:
    """Load and validate one user card, resolving its relative paths against its folder."""
    p = Path(path).expanduser()
    data = read_yaml(p)
    folder = p.resolve().parent
    src = data.get("source") if isinstance(data.get("source"), dict) else None
    if src is not None:
        args = src.get("args")
        if isinstance(args, dict):
            src["args"] = {**args, **{k: _absolute(args[k], folder) for k in ("path", "id") if k in args}}
        if isinstance(src.get("hub"), dict) and "id" in src["hub"]:
            src["hub"] = {**src["hub"], "id": _absolute(src["hub"]["id"], folder)}
    card = card_from_data(data, p)
    import clrbench.data.generic  # registers image_folder, csv, hf
    import clrbench.data.hub
    import clrbench.data.sources  # noqa: F401
    from clrbench.data.images import LOADERS

    if card.source.loader not in LOADERS.names():
        raise ConfigError(f"{p.name}: unknown loader {card.source.loader!r}; use image_folder, csv, hf "
                          "or a shipped one (clrbench tasks ls).")
    check_loader_args(card)
    return card


def _card_files(part: str) -> list[Path]:
    p = Path(part).expanduser()
    if p.is_dir():
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        if not files:
            raise ConfigError(f"--tasks: the folder {p} holds no .yaml task cards.")
        return files
    if not p.is_file():
        raise ConfigError(f"--tasks: no card file or folder {part!r}.")
    return [p]


def select_cards(spec: str, tasks_dir: str | Path | None = None) -> list[tuple[TaskCard, str | None]]:
    """Resolve ``--tasks`` to (card, card file or None for a shipped card), in order.

    Raises:
        ConfigError: an unknown name, a bad card, or a user card whose name is taken.
    """
    shipped = load_cards(tasks_dir)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    user: dict[str, tuple[TaskCard, str]] = {}
    for part in [n for n in names if is_path(n)]:
        for f in _card_files(part):
            card = load_user_card(f)
            if card.name in shipped or card.name in user:
                other = user[card.name][1] if card.name in user else "a shipped card"
                raise ConfigError(f"the task card {f} is named {card.name!r}, as is {other}; rename one.")
            user[card.name] = (card, str(f.resolve()))
    rest = ",".join(n for n in names if not is_path(n))
    out: list[tuple[TaskCard, str | None]] = [(c, None) for c in (select_tasks(rest, shipped) if rest else [])]
    out += list(user.values())
    seen: dict[str, tuple[TaskCard, str | None]] = {}
    for card, card_file in out:
        seen.setdefault(card.name, (card, card_file))
    if not seen:
        raise ConfigError(f"No task selected by {spec!r}.")
    return list(seen.values())


def find_card(name: str, tasks_dir: str | Path | None = None, card_file: str | None = None) -> TaskCard:
    """The card a job names: its user card file, else the shipped (or ``tasks_dir``) card."""
    if card_file:
        return load_user_card(card_file)
    return load_cards(tasks_dir)[name]


def check_loader_args(card: TaskCard) -> None:
    """A ``source.args`` key the loader does not take is one sentence (naming the ones it takes)."""
    import inspect

    from clrbench.data.images import LOADERS

    params = inspect.signature(LOADERS.get(card.source.loader)).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n in params if n not in ("root", "split")]
    extra = [k for k in card.source.args if k not in known]
    if extra:
        raise ConfigError(f"{card.name}: loader {card.source.loader!r} takes no argument {extra[0]!r} "
                          f"(it takes {', '.join(known) or 'none'}).")


def validate_card_files(parts: list[str], tasks_dir: str | Path | None = None) -> list[str]:
    """``clrbench tasks validate FILE...``: one line per valid card; the first problem raises."""
    shipped = load_cards(tasks_dir)
    lines = []
    for part in parts:
        for f in _card_files(part):
            card = load_user_card(f)
            check_loader_args(card)
            clash = " (its name is taken by a shipped card: rename it to use both)" if card.name in shipped else ""
            lines.append(f"{f}: valid card {card.name!r} v{card.version}, loader {card.source.loader}, "
                         f"{card.num_classes} classes, metric {card.metric}{clash}.")
    return lines
