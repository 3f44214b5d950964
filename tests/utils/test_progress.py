"""Progress bars: tqdm's live bar on a terminal; in a log file a few plain lines, without carriage returns."""
import io

from volumetric_attention.data.prepare import PrepareJob, run_prepare
from volumetric_attention.utils.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _progress_lines(text, desc):
    return [line for line in text.split("\n") if line.startswith(f"{desc}:")]


def test_a_log_gets_a_few_plain_lines():
    log = io.StringIO()
    bar = progress_bar(total=20, desc="cases", file=log)
    for _ in range(20):
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = _progress_lines(text, "cases")
    assert len(lines) == len(text.splitlines()) <= 15
    assert lines[0].startswith("cases: 0/20 (0%)") and lines[-1].startswith("cases: 20/20 (100%)")


def test_an_iterable_and_an_unfinished_bar_end_with_their_count():
    log = io.StringIO()
    assert list(progress_bar(range(7), desc="phantoms", file=log)) == list(range(7))
    assert _progress_lines(log.getvalue(), "phantoms")[-1].startswith("phantoms: 7/7 (100%)")
    log = io.StringIO()
    bar = progress_bar(total=50, desc="stopped", file=log)
    bar.update(12)
    bar.close()
    assert _progress_lines(log.getvalue(), "stopped")[-1].startswith("stopped: 12/50 (24%)")
    log = io.StringIO()
    assert list(progress_bar(iter("abc"), desc="no total", file=log)) == list("abc")
    assert _progress_lines(log.getvalue(), "no total")[-1].startswith("no total: 3 ")
    log = io.StringIO()
    progress_bar(total=0, desc="off", file=log, disable=True).close()
    assert log.getvalue() == ""


def test_a_terminal_gets_the_live_bar():
    terminal = _Terminal()
    for _ in progress_bar(range(5), desc="live", file=terminal):
        pass
    assert "\r" in terminal.getvalue() and "5/5" in terminal.getvalue()


def _nothing(job):
    pass


def test_prepare_writes_a_few_lines_for_20_cases(tmp_path):
    log = io.StringIO()
    jobs = [PrepareJob(case_id=f"case{k}", split="train", cache_root=str(tmp_path), settings={}) for k in range(20)]
    result = run_prepare(jobs, _nothing, str(tmp_path), {}, stream=log)
    assert len(result.done) == 20
    text = log.getvalue()
    assert "\r" not in text
    lines = _progress_lines(text, "prepare")
    assert 2 <= len(lines) <= 15 and lines[-1].startswith("prepare: 20/20 (100%)")
