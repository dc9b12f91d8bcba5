"""What every command shares: the Typer app, the two consoles, and the guard that turns
known bad-input errors into one sentence and a non-zero exit."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="clrbench", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help="SimCLR pretraining and the 12-dataset transfer benchmark (Kornblith et al. 2019).",
)
console = Console(stderr=True)
stdout = Console()

def _is_user_error(e: BaseException) -> bool:
    """Bad input: one sentence and exit 2 (every such error derives from UserError)."""
    from clrbench.errors import UserError

    return isinstance(e, UserError)


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guard(fn: Any) -> Any:
    """Turn known bad-input errors into one sentence and a non-zero exit."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            fail("interrupted; what was saved (checkpoints, records) is kept.", 130)
        except Exception as e:  # noqa: BLE001 - filtered just below
            if _is_user_error(e):
                fail(str(e))
            if isinstance(e, OSError) and e.errno == 28:
                fail(f"the disk is full ({e.filename or ''}); the previous checkpoint or record is intact.")
            raise

    return wrapper
