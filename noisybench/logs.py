"""A run's messages: Python ``logging`` to the console and to ``RUN_DIR/run.log``.

noisybench's own messages (the choices line, one line per epoch, warnings) go to the
logger ``noisybench``: on the console through ``tqdm.write`` (a progress bar is not torn;
warnings start with ``warning:``; with ``progress=false`` warnings only), and always into
``run.log`` with time and level. Warnings other libraries log (timm's, Accelerate's, the image
readers') and Python warnings raised during the run land in ``run.log`` too. Only the
main process writes; a resumed run appends to the same file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FILE = "run.log"
logger = logging.getLogger("noisybench")


class ConsoleHandler(logging.Handler):
    """Lines printed with ``tqdm.write``; warnings prefixed ``warning:``."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        message = record.getMessage()
        tqdm.write(f"warning: {message}" if record.levelno >= logging.WARNING else message)


class OwnInfoOthersWarnings(logging.Filter):
    """noisybench's messages from INFO up; other libraries' from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == "noisybench" or record.name.startswith("noisybench.")
        return record.levelno >= (logging.INFO if own else logging.WARNING)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def run_logging(output: Path, console: bool) -> Iterator[None]:
    """While a run works: the console (all lines with ``console``, else warnings; the main
    process only) and ``run.log``."""
    added: list[tuple[logging.Logger, logging.Handler]] = []
    level = logger.level
    logger.setLevel(logging.INFO)
    if is_main_process():
        file_handler = logging.FileHandler(Path(output) / LOG_FILE, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        file_handler.addFilter(OwnInfoOthersWarnings())
        added.append((logging.getLogger(), file_handler))  # the root logger: every library's records
        screen = ConsoleHandler(logging.INFO if console else logging.WARNING)  # warnings even when quiet
        added.append((logger, screen))
    for target, handler in added:
        target.addHandler(handler)
    logging.captureWarnings(True)  # warnings.warn(...) -> the logger 'py.warnings' -> run.log
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for target, handler in added:
            target.removeHandler(handler)
            handler.close()
        logger.setLevel(level)
