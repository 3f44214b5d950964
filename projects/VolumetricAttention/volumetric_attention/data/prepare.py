"""Running a prepare job over many cases: skip finished ones, parallel workers, progress bar, failures reported one
line each, index written last. Dataset-specific work lives in ``lits.py`` / ``deeplesion.py``."""
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..utils.cli import load_config, overrides_from_args
from ..utils.overrides import add_override_arguments
from ..utils.progress import progress_bar
from .cache import META_FILE, case_is_complete, read_json, remove_stale_temp_dirs, settings_mismatch, write_index

__all__ = ["PrepareJob", "PrepareResult", "run_prepare", "one_line", "report", "report_splits"]

logger = logging.getLogger(__name__)


@dataclass
class PrepareJob:
    """One case to prepare: ``fn(job)`` writes ``<cache_root>/<case_id>`` (picklable top-level function)."""

    case_id: str
    split: str
    cache_root: str
    settings: dict
    source: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class PrepareResult:
    done: List[str]
    skipped: List[str]
    failed: List[tuple]  # (case_id, one-line reason)

    @property
    def ok(self) -> bool:
        return not self.failed


def one_line(exc: BaseException, job: Optional[PrepareJob] = None) -> str:
    """A one-line reason; names the source file when the exception does not already."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if job is not None and job.source and not any(str(p) in text for p in job.source.values() if p):
        first = next((str(p) for p in job.source.values() if p), "")
        text = f"{first}: {type(exc).__name__}: {text}" if first else text
    return text


def _is_finished(job: PrepareJob) -> bool:
    case_dir = os.path.join(job.cache_root, job.case_id)
    if not case_is_complete(case_dir):
        return False
    try:
        meta = read_json(os.path.join(case_dir, META_FILE))
    except (OSError, ValueError):
        return False
    return not settings_mismatch(meta.get("settings", {}), job.settings) and meta.get("split") == job.split


def _run_one(fn, job):
    fn(job)
    return job.case_id


def run_prepare(jobs: List[PrepareJob], fn: Callable[[PrepareJob], None], cache_root: str, settings: dict,
                workers: int = 1, index_extra: Optional[dict] = None, desc: str = "prepare",
                stream=None) -> PrepareResult:
    """Prepare every job not already in the cache with the same settings, then write ``index.json``.

    The index lists every case whose entry is complete and made with ``settings``, so an interrupted or partly
    failed run still leaves a usable index, and the next run only does what is missing.
    """
    stream = stream or sys.stderr
    os.makedirs(cache_root, exist_ok=True)
    remove_stale_temp_dirs(cache_root)
    todo = [j for j in jobs if not _is_finished(j)]
    todo_ids = {j.case_id for j in todo}
    skipped = [j.case_id for j in jobs if j.case_id not in todo_ids]
    if skipped:
        logger.info(f"{len(skipped)} case(s) already prepared with these settings, skipped")
    done, failed = [], []
    by_id = {j.case_id: j for j in todo}
    progress = progress_bar(total=len(todo), desc=desc, unit="case", file=stream, disable=not todo)
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            try:
                _run_one(fn, job)
                done.append(job.case_id)
            except Exception as e:  # one bad case must not stop the others
                failed.append((job.case_id, one_line(e, job)))
            progress.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_run_one, fn, job): job.case_id for job in todo}
            for future in as_completed(futures):
                case_id = futures[future]
                try:
                    future.result()
                    done.append(case_id)
                except Exception as e:
                    failed.append((case_id, one_line(e, by_id[case_id])))
                progress.update(1)
    progress.close()

    failed_ids = {c for c, _ in failed}
    cases = [{"case_id": j.case_id, "split": j.split} for j in jobs
             if j.case_id not in failed_ids and _is_finished(j)]
    write_index(cache_root, cases, settings, failed=[{"case_id": c, "reason": r} for c, r in failed],
                **(index_extra or {}))
    for case_id, reason in sorted(failed):
        print(f"FAILED {case_id}: {reason}", file=stream)
    return PrepareResult(done=done, skipped=skipped, failed=sorted(failed))


def report(result: PrepareResult, cache_root: str, stream=None) -> int:
    """Print a prepare run's summary (and its failed cases) and return the CLI exit status: 0, or 1 if any failed."""
    stream = stream or sys.stderr
    print(f"{len(result.done)} prepared, {len(result.skipped)} already done, {len(result.failed)} failed "
          f"-> {cache_root}", file=stream)
    if result.failed:
        print(f"failed cases: {', '.join(c for c, _ in result.failed)}", file=stream)
        return 1
    return 0


def prepare_and_report(prepare, cache_root: str, dataset_prefix: str, splits=("train", "val", "test")) -> int:
    """The end of every prepare command: run ``prepare()`` (-> :class:`PrepareResult`), print the cases per split and
    the summary, and return the exit status (0; 1 when a case failed; 2 with a one-line error when the source cannot
    be prepared at all, e.g. a missing folder or ``DL_info.csv``)."""
    try:
        result = prepare()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report_splits(cache_root, dataset_prefix, splits=splits)
    return report(result, cache_root)


def report_splits(cache_root: str, dataset_prefix: str, splits=("train", "val", "test"), stream=None) -> dict:
    """Print the number of cases of every split in the cache's index, and a warning naming each empty dataset
    (``<dataset_prefix>_<split>``), which detectron2 would refuse at training time. Returns {split: count}."""
    from collections import Counter

    from .cache import INDEX_FILE

    stream = stream or sys.stderr
    try:
        cases = read_json(os.path.join(cache_root, INDEX_FILE)).get("cases", [])
    except (OSError, ValueError):
        cases = []
    counts = Counter(str(c.get("split")) for c in cases)
    result = {split: counts.get(split, 0) for split in splits}
    result.update({s: n for s, n in counts.items() if s not in result})
    print("cases per split: " + ", ".join(f"{s} {n}" for s, n in result.items()), file=stream)
    for split, n in result.items():
        if not n:
            print(f"warning: split '{split}' is empty: {dataset_prefix}_{split} cannot be used in DATASETS.TRAIN or "
                  "DATASETS.TEST", file=stream)
    return result


def add_common_arguments(parser, default_workers: int = 1):
    """Arguments shared by the prepare tools: config, setting overrides, workers."""
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="project yaml; its INPUT.CT.HU_WINDOW / SLICE_SPACING are the preprocessing settings")
    parser.add_argument("--hu-window", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                        help="override INPUT.CT.HU_WINDOW")
    parser.add_argument("--slice-spacing", type=float, default=None,
                        help="override INPUT.CT.SLICE_SPACING (mm; 0 keeps the native spacing)")
    parser.add_argument("--workers", type=int, default=default_workers, help="worker processes")
    parser.add_argument("opts", nargs="*", default=[], help="config overrides, KEY VALUE pairs")
    add_override_arguments(parser, positional=False)
    return parser


def settings_from_args(args, default_hu_window=None, default_slice_spacing=None):
    """(hu_window, slice_spacing, cfg) from ``--config-file``/opts, overridden by CLI flags; a config error ends the
    process with one line (:func:`~volumetric_attention.utils.cli.load_config`).

    ``default_*`` apply only when no config file is given (DeepLesion's defaults differ from LiTS's)."""
    opts = overrides_from_args(args)
    cfg = load_config(args.config_file or None, opts)
    hu_window = list(cfg.INPUT.CT.HU_WINDOW)
    slice_spacing = float(cfg.INPUT.CT.SLICE_SPACING)
    if not args.config_file and not opts:
        hu_window = list(default_hu_window) if default_hu_window is not None else hu_window
        slice_spacing = float(default_slice_spacing) if default_slice_spacing is not None else slice_spacing
    if args.hu_window is not None:
        hu_window = list(args.hu_window)
    if args.slice_spacing is not None:
        slice_spacing = float(args.slice_spacing)
    return hu_window, slice_spacing, cfg
