"""The one base class of every error a user can cause and fix: one sentence, no traceback.

The command line and the executor test ``isinstance(e, UserError)``: an error class that
derives from it is reported as its message alone (exit 2, or a failed record with that
sentence); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, missing data or an impossible request; the message is one clear sentence."""
