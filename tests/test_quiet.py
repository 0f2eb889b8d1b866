"""Importing mmlightning silences Lightning's advertising tips, and nothing else."""
import logging

import mmlightning  # noqa: F401  installs the filter


def test_tips_dropped_other_info_kept(caplog):
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        log.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        log.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
