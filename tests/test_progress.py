"""Progress in a log file: plain lines at an interval, not carriage-return redraws."""
import io
import os
import re
import subprocess
import sys

from vsc_cli.common import progress
from vsc_cli.common.progress import PlainProgress


def test_plain_lines_carry_count_postfix_rate_and_time_left(monkeypatch):
    monkeypatch.setenv("VSC_PROGRESS_SECONDS", "0")
    out = io.StringIO()
    bar = PlainProgress(range(3, 10), desc="training", initial=3, total=10, file=out)
    for i in bar:
        bar.set_postfix(elbo=f"{i:.1f}", c="50")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 7  # one per update at interval 0; close adds none
    assert re.fullmatch(r"training 4/10 \(40%\) elbo=3\.0 c=50 \| [\d.]+ it/s, 0:00 elapsed, 0:\d\d left", lines[0])
    assert lines[-1].startswith("training 10/10 (100%) elbo=9.0") and "left" not in lines[-1]


def test_quiet_between_intervals_and_a_last_line_for_long_tasks(monkeypatch):
    monkeypatch.setenv("VSC_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    with PlainProgress(total=5, desc="encoding", file=out) as bar:
        bar.update(5)
    assert out.getvalue() == ""  # short: nothing at all
    clock = iter([0.0, 4000.0, 5000.0, 5000.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = PlainProgress(total=4, desc="classifying", file=out)  # t0 = 0 s
    bar.update(2)  # at 4,000 s: more than an interval since the start, a line
    bar.update(1)  # at 5,000 s: within the interval, none
    bar.close()  # at 5,000 s: the last line, since progress was made after the last one
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("classifying 2/4 (50%) |") and "1:06:40 elapsed, 1:06:40 left" in lines[0]
    assert lines[1].startswith("classifying 3/4 (75%) |") and "1:23:20 elapsed" in lines[1]


def test_terminal_keeps_the_bar(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert not isinstance(progress.tqdm(range(3), file=Tty()), PlainProgress)
    assert isinstance(progress.tqdm(range(3), file=io.StringIO()), PlainProgress)
    assert not isinstance(progress.tqdm(range(3), disable=True), PlainProgress)


def test_a_redirected_training_log_is_short_lines(shared_data, tmp_path):
    log = tmp_path / "train.log"
    env = dict(os.environ, VSC_PROGRESS_SECONDS="0.5")
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "vsc_cli", "train", "--data", "fmnist", "--dim", "4",
                               "--hidden", "16", "--iterations", "300", "--train-size", "500", "--test-size", "100",
                               "--batch-size", "50", "--log-every", "50", "--data-dir", str(shared_data),
                               "--out", str(tmp_path / "run")], stdout=fh, stderr=subprocess.STDOUT, env=env)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and all(len(line) < 160 for line in text.splitlines())
    training = [line for line in text.splitlines() if line.startswith("training ")]
    assert training and training[-1].startswith("training 300/300 (100%)")
    assert all(re.match(r"training \d+/300 \(\d+%\)", line) for line in training)
    assert "test ELBO per image" in text
