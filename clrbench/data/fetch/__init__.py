"""Obtain and check the transfer datasets: ``clrbench data download`` and ``clrbench data verify``.

The CLI calls :func:`download_tasks` and :func:`verify_tasks` with the selected cards and the
data root, renders the reports, and exits non-zero when a report is not ``ok``;
:func:`missing_message` is the one sentence for a task whose data is absent. Nothing here reads
the environment or imports rich: progress goes through a ``progress(label, done, total)``
callback.
"""

from __future__ import annotations

from clrbench.data.fetch.birdsnap import BirdsnapFetch, fetch_birdsnap_images
from clrbench.data.fetch.download import DownloadReport, download_task, download_tasks
from clrbench.data.fetch.http import FetchError, Progress, download_file, md5_of
from clrbench.data.fetch.verify import (
    Md5Check,
    VerifyReport,
    dataset_dir,
    missing_files,
    missing_message,
    verify_task,
    verify_tasks,
)

__all__ = [
    "BirdsnapFetch", "DownloadReport", "FetchError", "Md5Check", "Progress", "VerifyReport",
    "dataset_dir", "download_file", "download_task", "download_tasks", "fetch_birdsnap_images",
    "md5_of", "missing_files", "missing_message", "verify_task", "verify_tasks",
]
