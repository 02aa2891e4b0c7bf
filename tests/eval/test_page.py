"""The listening page (report.html): every link relative and present after the report folder moves, examples
chosen by the percentile rule, resumable; in headless Chromium every audio element loads (slow)."""
import math
import shutil
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sgmse_nc.enhance import folder as enhancement
from sgmse_nc.eval.report import page, study
from sgmse_nc.eval.report.cli import load_config
from sgmse_nc.eval.report.run import run_report
from tests.conftest import speech_like
from tests.eval.test_report import make_set


def fake_enhance(ckpt, noisy_dir, out_dir, options, ref_dir=None):
    """Stands in for the model: clean + g · noise with a gain g per file and folder (so the files' improvements
    differ); w = 3 fails like a crash would."""
    if options.guidance == 3:
        raise RuntimeError("CUDA out of memory (planted)")
    clean_dir = Path(noisy_dir).parent / "clean"
    for path in sorted(Path(noisy_dir).glob("*.wav")):
        if (Path(out_dir) / path.name).is_file():
            continue  # as enhance_folder: finished files are kept
        y, sr = sf.read(path)
        x, _ = sf.read(clean_dir / path.name)
        gain = 0.1 + 0.8 * (zlib.crc32(f"{out_dir}/{path.name}".encode()) % 1000) / 1000
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        sf.write(Path(out_dir) / path.name, (x + gain * (y - x)).astype(np.float32), sr, subtype="FLOAT")
    return {}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """A report of two runs (r1 conditional, r2 unconditional) on two sets at w = 0, 1, 3 (w = 3 fails)."""
    tmp = tmp_path_factory.mktemp("page")
    sets = {"in": make_set(tmp / "in", speech_like, n=6), "ood": make_set(tmp / "ood", speech_like, n=5, seed=1)}
    for name in ("r1", "r2"):
        (tmp / name / "checkpoints").mkdir(parents=True)
        (tmp / name / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(study, "run_info", lambda ckpt, folder: {"encoder": "cnn" if folder.name == "r1" else "none",
                                                             "backbone": "x", "steps": 1})
        mp.setattr(enhancement, "enhance_folder", fake_enhance)
        cfg = load_config("default", [f"+runs.r1={tmp / 'r1'}", f"+runs.r2={tmp / 'r2'}",
                                      *[f"+sets.{k}={v}" for k, v in sets.items()], "guidance=[0,1,3]",
                                      f"out_dir={tmp / 'rep'}", "score_workers=0", "metrics=[si_sdr]",
                                      "diagnostics.enabled=false"])
        run_report(cfg)
        stamps = {p: p.stat().st_mtime_ns for p in (tmp / "rep" / page.LISTEN).rglob("*") if p.is_file()}
        run_report(cfg)  # resumes: the page's copies and spectrograms are kept
        assert {p: p.stat().st_mtime_ns for p in (tmp / "rep" / page.LISTEN).rglob("*") if p.is_file()} == stamps
    moved = tmp / "moved" / "report"  # the page must work wherever the report folder goes
    moved.parent.mkdir()
    shutil.move(tmp / "rep", moved)
    return moved


class Links(HTMLParser):
    """Every src/href of a page, the ids it defines, the audio sources and the examples' headings."""

    def __init__(self):
        super().__init__()
        self.links, self.ids, self.audio, self.headings = [], set(), [], []
        self._in_h4 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "audio":
            self.audio.append(attrs["src"])
        self._in_h4 = tag == "h4"

    def handle_endtag(self, tag):
        self._in_h4 = False if tag == "h4" else self._in_h4

    def handle_data(self, data):
        if self._in_h4:
            self.headings.append(data)


def test_every_link_is_relative_and_present_after_the_folder_moves(tiny_report):
    text = (tiny_report / page.PAGE).read_text()
    parsed = Links()
    parsed.feed(text)
    assert len(parsed.links) > 20
    for link in parsed.links:
        url = urlparse(link)
        assert not url.scheme and not url.netloc and not url.path.startswith("/"), link
        if url.path:
            assert (tiny_report / unquote(url.path)).is_file(), link
        else:
            assert url.fragment in parsed.ids, link
    assert "url(" not in text and "@import" not in text and "<script" not in text  # nothing fetched, nothing run
    # per set 3 examples × (noisy, r1 w=0, r1 w=1, r2 unconditional, clean, reference): the failed w=3 has none
    assert len(parsed.audio) == 2 * 3 * 6
    assert not any("w3" in src for src in parsed.audio)
    for src in parsed.audio:
        info = sf.info(tiny_report / unquote(src))
        assert (info.channels, info.subtype, info.samplerate) == (1, "PCM_16", 16000)
    assert "| r1 | 3 | FAILED |" in (tiny_report / "report.md").read_text() and "<td>FAILED</td>" in text
    assert "plot_vs_w.png" in text and "spectrograms.png" in text and "round(p/100 · (n − 1))" in text


def test_examples_follow_the_percentile_rule_of_the_best_system(tiny_report):
    """Recomputed here from the per-file rows: the best run × w by mean SI-SDR improvement, its files at the
    10th/50th/90th percentile rank."""
    text = (tiny_report / page.PAGE).read_text()
    for set_name in ("in", "ood"):
        work = tiny_report / "work"
        noisy = pd.read_csv(work / "noisy" / set_name / "eval" / "per_file.csv").set_index("id")["si_sdr"]
        cells = {f"{run}/{cell.name}": pd.read_csv(cell / "eval" / "per_file.csv").set_index("id")["si_sdr"] - noisy
                 for run in ("r1", "r2") for cell in sorted((work / run / set_name).iterdir())
                 if (cell / "eval" / "per_file.csv").is_file()}
        best = max(cells.values(), key=lambda d: d.mean())
        ranked = best.sort_values(kind="stable").index  # ids are unique and improvements distinct here
        expected = [ranked[math.floor(q * (len(ranked) - 1) + 0.5)] for q in (0.1, 0.5, 0.9)]
        section = text[text.index(f'<section id="{set_name}">'):]
        parsed = Links()
        parsed.feed(section[:section.index("</section>")])
        chosen = [h.split(": ")[1].split(" (")[0] for h in parsed.headings]
        assert chosen == list(dict.fromkeys(expected)), (set_name, chosen, expected)


def test_percentile_rule_on_a_crafted_table():
    """Twelve files: the best system (b, higher mean improvement) ranks them differently from system a and from
    the noisy scores; the rule takes b's ranks round(1.1), round(5.5), round(9.9) = 1, 6, 10 (half up)."""
    ids = [f"f{i:02d}" for i in range(12)]
    noisy = pd.Series(np.arange(12.0), index=ids)  # noisy order: f00 < f01 < ... < f11
    # b's order: f05 f03 f07 f01 f09 f00 f10 f04 f08 f02 f06 f11
    b_delta = pd.Series([5, 3, 9, 1, 7, 0, 10, 2, 8, 4, 6, 11], index=ids, dtype=float)
    a_delta = pd.Series(np.linspace(0, 1, 12), index=ids)  # lower mean, a's order = the noisy order
    systems = [page.Signal("a", "a", Path("a"), (noisy + a_delta).to_frame("pesq")),
               page.Signal("b", "b", Path("b"), (noisy + b_delta).to_frame("pesq"))]
    best = page.best_system(noisy, systems, "pesq")
    assert best.label == "b"
    assert page.percentile_files(best.improvement) == [(10, "f03"), (50, "f10"), (90, "f06")]
    # ties are broken by id, unscored files are left out, a file is listed once
    tied = pd.Series([1.0, 1.0, np.nan, 1.0], index=["c", "a", "z", "b"])
    assert page.percentile_files(tied) == [(10, "a"), (50, "b"), (90, "c")]
    assert page.percentile_files(pd.Series([2.0], index=["only"])) == [(10, "only")]
    assert page.percentile_files(pd.Series([], dtype=float)) == []


# ------------------------------------------------------------------------------------------ headless Chromium

class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending in NUL
    on fds 3 and 4), so no browser download and no extra package are needed."""

    def __init__(self, executable: str, profile: Path):
        import fcntl
        import os
        import subprocess

        to_browser, from_browser = os.pipe(), os.pipe()
        # the ends the browser keeps, moved above 4 so that dup2 onto 3 and 4 cannot overwrite one another
        ends = [fcntl.fcntl(to_browser[0], fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser[1], fcntl.F_DUPFD, 10)]

        def child():
            os.dup2(ends[0], 3)
            os.dup2(ends[1], 4)

        flags = ["--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
                 "--disable-gpu", "--mute-audio", "--allow-file-access-from-files", "--window-size=1400,1000"]
        flags += ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses to run as root with its sandbox
        self.process = subprocess.Popen([executable, *flags, "about:blank"], preexec_fn=child, close_fds=False,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_browser[0], from_browser[1], *ends):  # the browser holds its own copies now
            os.close(fd)
        self.write, self.read = os.fdopen(to_browser[1], "wb", buffering=0), from_browser[0]
        self.buffer, self.events, self.next_id = b"", [], 0

    def _message(self, deadline: float) -> dict:
        import json
        import os
        import select
        import time

        while b"\0" not in self.buffer:
            if not select.select([self.read], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, timeout: float = 60.0, **params) -> dict:
        import json
        import time

        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params, **({"sessionId": session} if session
                                                                               else {})}
        self.write.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        import time

        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._message(deadline))
        return next(e for e in self.events if e.get("method") == method)

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - it is going away either way
            pass
        try:
            self.process.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.process.kill()
        self.write.close()


# every audio element's duration once its metadata loaded (or its error), and every image's state
AUDIO_CHECK = """
new Promise(done => {
  const audio = [...document.querySelectorAll('audio')].map(a => new Promise(resolve => {
    const report = () => resolve({src: a.getAttribute('src'), duration: a.duration, error: a.error && a.error.code});
    if (a.readyState >= 1 || a.error) return report();
    a.addEventListener('loadedmetadata', report);
    a.addEventListener('error', report);
    a.load();
  }));
  setTimeout(() => done({timeout: true}), 45000);
  Promise.all(audio).then(results => done({audio: results, images: [...document.images].map(
    i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))}));
})
"""


@pytest.fixture(scope="module")  # module scope: asked before the module-scoped report is built
def chromium() -> str:
    """The Chromium executable, or the test is skipped saying so."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium); the listening page "
                    "was not opened in a browser")
    return executable


def open_in_chromium(chromium: str, page_file: Path, tmp_path: Path) -> dict:
    """Open a page in headless Chromium: the audio/image check, every request's URL, the failed ones, console
    errors; saves a full-page screenshot (tmp_path/page.png)."""
    import base64

    browser = DevTools(chromium, tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable", session)
        browser.call("Page.navigate", session, url=page_file.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        checked = browser.call("Runtime.evaluate", session, timeout=90, expression=AUDIO_CHECK, awaitPromise=True,
                               returnByValue=True)["result"]["value"]
        size = browser.call("Page.getLayoutMetrics", session)["cssContentSize"]
        shot = browser.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        (tmp_path / "page.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    events = browser.events
    urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in events
            if e.get("method") == "Network.requestWillBeSent"}
    failed = [(urls.get(e["params"]["requestId"]), e["params"]["errorText"]) for e in events
              if e.get("method") == "Network.loadingFailed"]
    errors = [e["params"]["entry"]["text"] for e in events
              if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
    errors += [str(e["params"]) for e in events if e.get("method") == "Runtime.exceptionThrown"]
    return {**checked, "urls": list(urls.values()), "failed": failed, "errors": errors}


@pytest.mark.slow  # starts a browser: ~10-30 s
def test_page_loads_in_headless_chromium(chromium, tiny_report, tmp_path):
    seen = open_in_chromium(chromium, tiny_report / page.PAGE, tmp_path)
    assert not seen.get("timeout"), "the audio elements did not load within 45 s"
    assert len(seen["audio"]) == 2 * 3 * 6
    for audio in seen["audio"]:
        assert audio["error"] is None and audio["duration"] > 0, audio
    assert seen["images"] and all(image["ok"] for image in seen["images"]), seen["images"]
    assert not seen["failed"] and not seen["errors"], (seen["failed"], seen["errors"])
    # no network: files of the report, and the data: icons of Chromium's own audio controls
    assert seen["urls"] and [u for u in seen["urls"] if not u.startswith(("file://", "data:"))] == []
    assert (tmp_path / "page.png").stat().st_size > 10_000
