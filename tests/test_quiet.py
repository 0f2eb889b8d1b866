"""The CLI silences Lightning's advertising tips, and nothing else; importing the library silences nothing."""
import logging
import subprocess
import sys

from mmlightning.cli import quiet_third_party


def test_tips_dropped_other_info_kept(caplog):
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert sum(type(f).__name__ == "_NoTips" for f in log.filters) == 1
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        log.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        log.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_import_installs_no_filter_and_stays_light():
    code = ("import logging, sys, warnings; n = len(warnings.filters); import mmlightning as mm; "
            "assert len(warnings.filters) == n, 'warning filter installed on import'; "
            "assert not logging.getLogger('pytorch_lightning.utilities.rank_zero').filters; "
            "assert 'torch' not in sys.modules, 'import mmlightning imported torch'; "
            "assert callable(mm.fuse) and mm.UserError.__name__ == 'UserError'")
    subprocess.run([sys.executable, "-c", code], check=True)
