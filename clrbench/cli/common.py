"""What every command shares: the Typer app, the two consoles, and the guard that turns
known bad-input errors into one sentence and a non-zero exit."""

from __future__ import annotations

import errno
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


_OS_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.EISDIR: "it is a folder, where a file was expected",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "a file is in the way where a folder is needed",
    errno.ENAMETOOLONG: "the name is too long",
}


def os_error_sentence(e: OSError) -> str:
    """One sentence for a filesystem error: the path, the reason, and that earlier outputs stand."""
    path = e.filename if e.filename is not None else "(a file being written)"
    if e.filename2 is not None:
        path = f"{path} -> {e.filename2}"
    reason = _OS_REASONS.get(e.errno or -1, (e.strerror or str(e)).lower())
    return (f"cannot use {path}: {reason}; nothing already written (checkpoints, records, exports) "
            "was changed.")


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
        except Exception as e:  # filtered just below
            if _is_user_error(e):
                fail(str(e))
            if isinstance(e, OSError) and e.errno is not None:
                fail(os_error_sentence(e))
            raise

    return wrapper
