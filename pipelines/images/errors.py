"""Why a row was not written: the fixed vocabulary of `failures.csv` reasons.

Every stage that drops a row raises `RowFailure` with one of `REASONS`; the pipeline turns it
into a `failures.csv` line (`id,url,reason,detail`). Keeping the vocabulary closed makes the report
countable (`stats.json` histograms it) and lets tests assert exact reasons.
"""

from __future__ import annotations

REASONS = (
    "bad_row",  # the CSV row could not be parsed (missing id/url, bad landmark_id, wrong arity)
    "duplicate_id",  # an id seen before in the input; the first occurrence is kept
    "http_403",
    "http_404",
    "http_410",
    "http_4xx",  # any other permanent 4xx
    "http_5xx",  # server errors that persisted through every retry
    "http_429",  # rate-limited through every retry
    "timeout",  # connect/read timeout through every retry
    "connection_error",  # DNS, refused, reset through every retry
    "not_found",  # local or gs:// object does not exist
    "fetch_error",  # any other fetch failure (permission, bad scheme)
    "not_a_file",  # a local url naming a FIFO, device (/dev/zero), socket or directory: never opened
    "empty",  # zero bytes
    "not_an_image",  # bytes are no image format we decode (HTML, text, ...)
    "truncated",  # an image whose data ends early or is corrupt
    "too_large",  # declared dimensions above the decompression-bomb limit
    "too_small",  # decoded image below the minimum side
    "decode_error",  # the decoder failed for another reason
    "md5_mismatch",  # a tar member (or its whole tar) differs from the md5 list
    "md5_missing",  # an md5 list was given but names neither the member nor its tar
)


class RowFailure(Exception):
    """A row that cannot be written; `reason` is one of `REASONS`, `detail` is free text."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
