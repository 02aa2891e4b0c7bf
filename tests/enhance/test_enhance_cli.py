"""enhance.py against bad inputs and interruptions, through the real entry point (subprocess), on synthetic
files: the exit status, the one `error:` line naming the file and the option to use, and the output folder
afterwards (nothing partial, nothing overwritten, the same files as an uninterrupted run)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def enhance(*args, check=None, subprocess_run: bool = False) -> subprocess.CompletedProcess:
    """enhance.py's entry point with `args`: in this process (what `python enhance.py` runs, without paying the
    imports again), or in a fresh interpreter."""
    argv = ["--device", "cpu", *map(str, args)]
    if subprocess_run:
        out = subprocess.run([sys.executable, "enhance.py", *argv], cwd=ROOT, capture_output=True, text=True)
    else:
        from sgmse_nc.enhance.cli import main

        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main(argv)
            except SystemExit as exit_:  # argparse
                status = exit_.code
        out = subprocess.CompletedProcess(argv, status, stdout.getvalue(), stderr.getvalue())
    if check is not None:
        assert out.returncode == check, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def error_line(out: subprocess.CompletedProcess) -> str:
    """The one `error:` line (tqdm / logging may print other lines)."""
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[0]


def write(path: Path, seconds: float = 0.6, rate: int = 16000, channels: int = 1, seed: int = 0,
          subtype: str = "PCM_16", data=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    sf.write(path, data, rate, subtype=subtype)
    return path


def folder(root: Path, n: int = 3, seconds=(0.6, 0.9, 1.3)) -> tuple[Path, Path]:
    noisy, refs = root / "noisy", root / "refs"
    for i in range(n):
        write(noisy / f"u{i}.wav", seconds[i % len(seconds)], seed=i)
        write(refs / f"u{i}.wav", 0.5, seed=100 + i)
    return noisy, refs


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def audio(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): sf.read(p, dtype="int16")[0] for p in sorted(folder.rglob("*.wav"))}


FAST = ("--N", "2")


def test_every_bad_input_is_reported_at_once_and_nothing_is_done(tmp_path, tiny_ckpt):
    noisy, refs = folder(tmp_path, 3)
    bad = {
        "rate.wav": lambda p: write(p, rate=48000),
        "stereo.wav": lambda p: write(p, channels=2),
        "corrupt.wav": lambda p: p.write_bytes(b"RIFF\x00\x00not really a wav file"),
        "empty.wav": lambda p: p.write_bytes(b""),
        "nan.wav": lambda p: write(p, subtype="FLOAT", data=np.full(8000, np.nan)),
        "short.wav": lambda p: write(p, seconds=0.01),
        "sub/noref.wav": lambda p: write(p),
    }
    for name, make in bad.items():
        make(noisy / name)
        if name != "sub/noref.wav":
            write(refs / name, 0.5)
    before = digest(tmp_path)
    out = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--ref-dir", refs, "--out", tmp_path / "out", *FAST,
                  check=2, subprocess_run=True)
    line = error_line(out)
    assert "7 of 10 input file(s) cannot be used, nothing was enhanced" in line
    for name in bad:
        assert name.split("/")[-1] in line
    for fix in ("--resample", "--channels mix", "--skip-bad", "--ref-dir", "NaN or Inf", "cannot be read"):
        assert fix in line
    assert not (tmp_path / "out").exists() and digest(tmp_path) == before  # nothing written, inputs untouched

    # --skip-bad: the good files are enhanced, the run ends with the list and status 1; a rerun keeps them
    out = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--ref-dir", refs, "--out", tmp_path / "out", "--skip-bad",
                  *FAST, check=1, subprocess_run=True)
    assert "enhanced 3 file(s), 0 already done, 7 skipped (bad input), 0 failed" in out.stdout
    assert all(f"skipped {name}:" in out.stdout for name in bad)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.wav")) == ["u0.wav", "u1.wav", "u2.wav"]
    assert json.loads((tmp_path / "out" / "enhance_settings.json").read_text())["ckpt_step"] == 7
    made = digest(tmp_path / "out")
    out = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--ref-dir", refs, "--out", tmp_path / "out", "--skip-bad",
                  *FAST, check=1)
    assert "enhanced 0 file(s), 3 already done, 7 skipped" in out.stdout and digest(tmp_path / "out") == made


def test_output_folder_problems_are_refused_before_anything_is_written(tmp_path, tiny_ckpt):
    noisy, refs = folder(tmp_path, 1)
    before = digest(tmp_path)
    inside = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--out", noisy / "enhanced", check=2)
    assert "--out" in error_line(inside) and "inside --noisy" in error_line(inside)
    in_refs = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--ref-dir", refs, "--out", refs, check=2)
    assert "inside --ref-dir" in error_line(in_refs)
    no_refs = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--ref-dir", tmp_path / "norefs", "--out",
                      tmp_path / "out", check=2)
    assert "--ref-dir" in error_line(no_refs) and "norefs: folder not found" in error_line(no_refs)
    (tmp_path / "afile").write_text("x")
    under_file = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--out", tmp_path / "afile" / "out", check=2)
    assert "afile is a file, not a folder" in error_line(under_file)
    if os.geteuid() == 0:  # root writes through permission bits: use a folder the kernel refuses
        unwritable = Path("/sys/sgmse_nc_out")
        if os.access("/sys", os.W_OK) and not Path("/sys").is_dir():
            pytest.skip("no unwritable folder on this machine")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        unwritable = locked / "out"
    denied = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--out", unwritable, check=2)
    assert f"--out {unwritable}: cannot write" in error_line(denied)
    (tmp_path / "afile").unlink()
    assert digest(tmp_path) == before


@pytest.mark.parametrize("option, value, message", [
    ("--N", "0", "argument --N: '0' is not an integer from 1 to 10000"),
    ("--batch-size", "0", "argument --batch-size: '0' is not an integer from 1 to 4096"),
    ("--chunk-seconds", "0.01", "--chunk-seconds 0.01: must be 0 (whole files) or at least 0.5 s"),
    ("--guidance", "nan", "argument --guidance: 'nan' is not a number from 0 to 100"),
    ("--snr", "0", "argument --snr: '0' is not a number above 0 up to 10"),
    ("--corrector-steps", "-1", "argument --corrector-steps: '-1' is not an integer from 0 to 100"),
    ("--N", "two", "argument --N: 'two' is not an integer from 1 to 10000"),
])
def test_numeric_options_are_validated_by_name(tmp_path, tiny_ckpt, option, value, message):
    noisy, _ = folder(tmp_path, 1)
    out = enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--out", tmp_path / "out", option, value, check=2)
    assert message in error_line(out)
    assert not (tmp_path / "out").exists()


def test_bad_checkpoints_leave_no_settings_record(tmp_path, tiny_ckpt):
    noisy, _ = folder(tmp_path, 1)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    out = enhance("--ckpt", junk, "--noisy", noisy, "--out", tmp_path / "out", check=2)
    assert f"--ckpt {junk}: not a readable sgmse_nc checkpoint" in error_line(out)
    other = tmp_path / "other.ckpt"
    import torch

    torch.save({"state_dict": {"w": torch.zeros(1)}, "global_step": 3}, other)
    out = enhance("--ckpt", other, "--noisy", noisy, "--out", tmp_path / "out", check=2)
    assert "not a sgmse_nc checkpoint" in error_line(out)
    state = torch.load(tiny_ckpt, weights_only=True)  # another architecture: the weights do not fit
    state["hyper_parameters"]["backbone"]["nf"] = 16
    torch.save(state, other)
    out = enhance("--ckpt", other, "--noisy", noisy, "--out", tmp_path / "out", check=2)
    assert f"{other}: not a sgmse_nc checkpoint" in error_line(out)
    missing = enhance("--ckpt", tmp_path / "nope.ckpt", "--noisy", noisy, "--out", tmp_path / "out", check=2)
    assert "nope.ckpt: file not found" in error_line(missing)
    assert not (tmp_path / "out").exists()
    enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--out", tmp_path / "out", *FAST, check=0)  # the right rerun
    settings = json.loads((tmp_path / "out" / "enhance_settings.json").read_text())
    assert settings["resample"] is False and settings["N"] == 2 and settings["chunk_seconds"] == 20.0


def test_single_file_list_file_resample_and_channels(tmp_path, tiny_ckpt):
    src = tmp_path / "src"
    write(src / "a" / "x22.wav", 0.7, rate=22050)
    write(src / "b" / "x44.wav", 0.7, rate=44100, seed=1)
    write(src / "st.wav", 0.7, channels=2, seed=2)
    listing = tmp_path / "list.txt"
    listing.write_text("# files to enhance\nsrc/a/x22.wav\nsrc/b/x44.wav\n\n")
    out = enhance("--ckpt", tiny_ckpt, "--noisy", listing, "--out", tmp_path / "o1", *FAST, check=2)
    assert "--resample" in error_line(out) and "22050 Hz" in error_line(out)
    enhance("--ckpt", tiny_ckpt, "--noisy", listing, "--out", tmp_path / "o1", "--resample", *FAST, check=0)
    for name in ("a/x22.wav", "b/x44.wav"):  # names relative to the listed files' common folder
        got, want = sf.info(tmp_path / "o1" / name), sf.info(src / name)
        assert (got.frames, got.samplerate) == (want.frames, want.samplerate)  # exact length at 22.05 / 44.1 kHz
    assert json.loads((tmp_path / "o1" / "enhance_settings.json").read_text())["resample"] is True

    refused = enhance("--ckpt", tiny_ckpt, "--noisy", src / "st.wav", "--out", tmp_path / "o2", *FAST, check=2)
    assert "st.wav" in error_line(refused) and "--channels mix" in error_line(refused)
    enhance("--ckpt", tiny_ckpt, "--noisy", src / "st.wav", "--out", tmp_path / "o2", "--channels", "each", *FAST,
            check=0)
    enhance("--ckpt", tiny_ckpt, "--noisy", src / "st.wav", "--out", tmp_path / "o3", "--channels", "mix", *FAST,
            check=0)
    each, mix = sf.info(tmp_path / "o2" / "st.wav"), sf.info(tmp_path / "o3" / "st.wav")
    assert (each.channels, each.frames, mix.channels, mix.frames) == (2, 11200, 1, 11200)
    both = sf.read(tmp_path / "o2" / "st.wav")[0]
    assert not np.array_equal(both[:, 0], both[:, 1])  # each channel enhanced on its own (own noise draw)


def test_silent_reference_is_warned_per_file(tmp_path, tiny_ckpt, caplog):
    noisy, refs = folder(tmp_path, 2)
    write(refs / "u1.wav", data=np.zeros(8000))
    enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--ref-dir", refs, "--out", tmp_path / "out", *FAST, check=0)
    warnings = [r.getMessage() for r in caplog.records if "silent" in r.getMessage()]
    assert len(warnings) == 1 and "u1.wav" in warnings[0] and "null condition" in warnings[0]


def test_results_depend_on_seed_and_name_only(tmp_path, tiny_ckpt):
    """Batch 1 vs 4, and a file enhanced alone vs within a folder, give identical files."""
    noisy, refs = folder(tmp_path, 5, seconds=(0.6, 0.7, 1.3, 0.65, 1.2))
    # a stochastic sampler (the tiny model's own SB ODE sampler draws nothing, so no seed could matter)
    common = ("--ckpt", tiny_ckpt, "--ref-dir", refs, "--sampler", "sb_sde", *FAST)
    enhance(*common, "--noisy", noisy, "--out", tmp_path / "b1", "--batch-size", "1", check=0)
    enhance(*common, "--noisy", noisy, "--out", tmp_path / "b4", "--batch-size", "4", check=0)
    whole = audio(tmp_path / "b4")
    (tmp_path / "b4" / "u2.wav").unlink()  # as if an earlier run stopped before it
    enhance(*common, "--noisy", noisy, "--out", tmp_path / "b4", "--batch-size", "4", check=0)
    b1, b4 = audio(tmp_path / "b1"), audio(tmp_path / "b4")
    assert b1.keys() == b4.keys() == whole.keys() and len(b1) == 5
    for name in b1:
        np.testing.assert_array_equal(b4[name], whole[name], err_msg=name)  # resumed == uninterrupted, bit for bit
        # Another batch size runs other float kernels (GEMM blocking), so the last bit of an int16 sample may
        # round the other way; the randomness is the same (a different noise draw differs by far more than 1).
        assert np.abs(b1[name].astype(int) - b4[name].astype(int)).max() <= 1, name
    other_seed = tmp_path / "s1"
    enhance(*common, "--noisy", noisy, "--out", other_seed, "--seed", "1", check=0)
    assert not np.array_equal(audio(other_seed)["u0.wav"], b1["u0.wav"])


def test_long_files_are_chunked_by_default_with_flat_memory():
    """The default plan for a 10-minute file holds only chunk-sized batch items (what bounds the memory)."""
    from sgmse_nc.enhance.core import DEFAULT_CHUNK_SECONDS, chunk_samples, Plan

    chunk, overlap = chunk_samples(DEFAULT_CHUNK_SECONDS, 16000, 0.5)
    for minutes in (1, 10, 60):
        plan = Plan.make([minutes * 60 * 16000], [0], chunk, overlap, batch_size=4, hop=128, multiple=64)
        frames = {u.frames for batch in plan.batches for u in batch}
        assert frames == {-(-(chunk // 128 + 1) // 64) * 64}
    whole = Plan.make([600 * 16000], [0], *chunk_samples(0, 16000, 0.5), batch_size=4, hop=128, multiple=64)
    assert len(whole.batches) == 1 and whole.batches[0][0].stop == 600 * 16000  # --chunk-seconds 0: whole file


def _finished(out: Path) -> list[str]:
    """The enhanced files a user sees: pathlib's glob also matches the hidden temporaries of writes in flight."""
    return sorted(p.name for p in out.glob("*.wav") if not p.name.startswith("."))


def _wait_for_file(proc: subprocess.Popen, path: Path, timeout: float = 600) -> None:
    """Until `path` exists (the held process's signal that it waits mid-batch), or the process ended."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"enhance.py did not reach {path.name} in time"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_interrupted_run_resumes_to_the_same_files(tmp_path, tiny_ckpt, how):
    """The command is held inside the network's first evaluation after its first file is written
    (tests.probes.held_enhance), so the signal lands mid-batch with files finished and files left, whatever the
    machine's load."""
    noisy, refs = folder(tmp_path, 6, seconds=(0.6, 0.7, 1.3, 0.65, 1.2, 0.62))
    common = ["--ckpt", tiny_ckpt, "--noisy", noisy, "--ref-dir", refs, "--N", "12", "--batch-size", "2"]
    enhance(*common, "--out", tmp_path / "whole", check=0)
    out, held = tmp_path / "cut", tmp_path / "held"
    code = "import sys; from tests.probes import held_enhance; sys.exit(held_enhance(sys.argv[1], sys.argv[2:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(held), "--device", "cpu", *map(str, common),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_file(proc, held)
    proc.send_signal(getattr(signal, how))
    stdout, stderr = proc.communicate(timeout=120)
    done = _finished(out)
    assert 1 <= len(done) < 6, "the run finished before it was interrupted"
    assert not [p for p in out.iterdir() if p.name not in done and p.name != "enhance_settings.json"
                and not p.name.startswith(".")], "a partial file is visible"
    if how == "SIGINT":  # Ctrl-C: what finished and how to resume, no traceback
        assert proc.returncode == 130 and "Traceback" not in stderr
        assert "interrupted:" in stderr and "Rerun the same command to resume" in stderr
    kept = {name: digest(out)[name] for name in done}
    resumed = enhance(*common, "--out", out, check=0, subprocess_run=True)
    assert f"{len(done)} already done" in resumed.stdout
    assert {name: digest(out)[name] for name in done} == kept  # finished files are not rewritten
    whole, cut = audio(tmp_path / "whole"), audio(out)
    assert whole.keys() == cut.keys()
    for name in whole:
        np.testing.assert_array_equal(whole[name], cut[name], err_msg=name)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_the_permissions_the_umask_gives(tmp_path, tiny_ckpt, umask, mode):
    noisy, _ = folder(tmp_path, 1)
    out = subprocess.run([sys.executable, "enhance.py", "--device", "cpu", "--ckpt", str(tiny_ckpt), "--noisy",
                          str(noisy), "--out", str(tmp_path / "out"), *FAST], cwd=ROOT, capture_output=True,
                         text=True, preexec_fn=lambda: os.umask(umask))
    assert out.returncode == 0, out.stderr[-3000:]
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == ["enhance_settings.json", "u0.wav"]
    assert all(p.stat().st_mode & 0o777 == mode for p in written)


def test_settings_record_keeps_the_format_existing_output_folders_hold(tmp_path, tiny_ckpt):
    """enhance_settings.json as the code before EnhanceOptions wrote it (byte for byte): old folders resume. They
    were made with checkpoints that do not record ref_seconds (whole reference files, as now for those)."""
    import torch

    noisy, refs = folder(tmp_path, 1)
    old = torch.load(tiny_ckpt, weights_only=True)
    del old["hyper_parameters"]["ref_seconds"]
    torch.save(old, tmp_path / "old.ckpt")
    tiny_ckpt = tmp_path / "old.ckpt"
    enhance("--ckpt", tiny_ckpt, "--noisy", noisy, "--ref-dir", refs, "--out", tmp_path / "out", "--sampler", "sb_sde",
            "--N", "2", "--guidance", "2", "--chunk-seconds", "0.6", "--resample", "--channels", "mix", check=0)
    record = {"N": 2, "channels": "mix", "chunk_seconds": 0.6, "ckpt": str(Path(tiny_ckpt).resolve()), "ckpt_step": 7,
              "corrector_steps": None, "guidance_scale": 2.0, "name": "sb_sde", "order": None,
              "ref_dir": str(refs.resolve()), "resample": True, "seed": 0, "snr": None, "use_ema": True}
    assert (tmp_path / "out" / "enhance_settings.json").read_text() == json.dumps(record, indent=2, sort_keys=True) + "\n"


def test_library_messages_name_options_and_the_command_names_flags(tmp_path):
    from sgmse_nc.enhance.cli import as_flags
    from sgmse_nc.enhance.folder import EnhanceOptions, enhance_folder
    from sgmse_nc.errors import UserError

    noisy, _ = folder(tmp_path, 1)
    for options, option in ((EnhanceOptions(batch_size=0), "`batch_size=0`"),
                            (EnhanceOptions(sampler={"N": 0}), "`N=0`"),
                            (EnhanceOptions(channels="both"), "`channels=both`")):
        with pytest.raises(UserError, match=option) as err:
            enhance_folder(tmp_path / "x.ckpt", noisy, tmp_path / "out", options)
        assert "--" not in str(err.value)
    with pytest.raises(UserError, match=r"`out=.*` lies inside `noisy=") as err:
        enhance_folder(tmp_path / "x.ckpt", noisy, noisy / "out")
    assert as_flags(str(err.value)).startswith(f"--out {noisy / 'out'} lies inside --noisy {noisy}:")
    assert as_flags("Pass `resample=True`, `channels='mix'` or `skip_bad=True`; `guidance=nan`; `name='pc'`; "
                    "`sox in.wav -c 1 out.wav`; `other=1`") == \
        "Pass --resample, --channels mix or --skip-bad; --guidance nan; --sampler pc; `sox in.wav -c 1 out.wav`; `other=1`"
