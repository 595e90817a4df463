"""The Chromaprint audio fingerprint: measured rates on audio made here from real ABC tunes, and linking
through ``register_works`` on both backends.

No audio corpus is installed, so the audio is synthesized from the real tunes bundled with music21
(``interop.abc.iter_tunes``): each tune's notes (pitch from the letter, octave marks, accidentals and the
key signature of ``K:``; length from ``L:`` and the note's multiplier) are played as additive tones (three
harmonics, 10 ms attack, exponential decay) at a fixed tempo, the first ``SECONDS_MAX`` seconds, as 16-bit
mono PCM WAV at 22,050 Hz. Tunes whose notes repeat a tune already chosen are left out (the Essen
collection holds some tunes twice: real duplicates). Transformations (``AUDIO_TRANSFORMS``): re-sampled to
16,000 and 44,100 Hz (linear interpolation), 6 dB quieter, white noise at -40 dBFS, 0.5 s of silence added
at the start, 0.3 s trimmed off the start (not a whole number of Chromaprint frames).

A pair counts as matched only if it shares a band key *and* passes the threshold, as ``register_works``
decides. The regular test measures a small set; ``python tests/duplicates/test_fingerprints_audio.py
--tunes 150`` prints the larger measurement that docs/concepts/registry.md reports.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import shutil
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from endcredits.errors import ValidationError
from endcredits.interop.abc import iter_tunes
from endcredits.registry import fingerprints
from endcredits.registry.fingerprints import (
    AUDIO_METHOD,
    AUDIO_THRESHOLD,
    Fingerprint,
    audio_fingerprint,
    compute_fingerprint,
    is_match,
    register_works,
    similarity,
)
from endcredits.registry.records import WorkIn
from endcredits.store.engine import Store
from endcredits.store.schema import fingerprint_bands, work_fingerprints, works


@pytest.fixture(autouse=True)
def _fpcalc_installed() -> None:
    """Never skipped: without fpcalc these tests fail and say how to install it."""
    if shutil.which("fpcalc") is None:
        pytest.fail("fpcalc is not installed: run `make install` (Debian package libchromaprint-tools)")


SAMPLE_RATE_HZ = 22_050
EIGHTH_NOTE_S = 0.2
SECONDS_MAX = 20.0
SECONDS_MIN = 12.0
"""Tunes shorter than this once synthesized are left out (Chromaprint needs about 5 s; more tells them apart)."""
NOISE_RMS = 0.01
SEED = 20261123

# ABC to notes ------------------------------------------------------------------------------------
_FIFTHS = {
    "C": 0,
    "G": 1,
    "D": 2,
    "A": 3,
    "E": 4,
    "B": 5,
    "F#": 6,
    "C#": 7,
    "F": -1,
    "Bb": -2,
    "Eb": -3,
    "Ab": -4,
    "Db": -5,
    "Gb": -6,
    "Cb": -7,
}
_MODE_FIFTHS = {"maj": 0, "ion": 0, "mix": -1, "dor": -2, "m": -3, "min": -3, "aeo": -3, "phr": -4, "loc": -5, "lyd": 1}
_SHARP_ORDER = "FCGDAEB"
_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}
_NOTE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-gz])([,']*)(\d*)(/*)(\d*)")
_NOT_NOTES = re.compile(r'"[^"]*"|![^!]*!|\+[^+]*\+|\{[^}]*\}|\[[A-Za-z]:[^\]]*\]|%.*')
"""Chord names, decorations, grace notes, inline fields and comments."""


def _key_signature(value: str) -> dict[str, int]:
    m = re.match(r"\s*([A-G][#b]?)\s*([A-Za-z]*)", value)
    if m is None or m.group(1) not in _FIFTHS:
        return {}
    mode = m.group(2).lower()
    fifths = _FIFTHS[m.group(1)] + _MODE_FIFTHS.get("m" if mode == "m" else mode[:3], 0)
    if fifths >= 0:
        return dict.fromkeys(_SHARP_ORDER[:fifths], 1)
    return dict.fromkeys(_SHARP_ORDER[::-1][:-fifths], -1)


def abc_notes(text: str) -> list[tuple[int | None, float]]:
    """(MIDI pitch or None for a rest, length in whole notes) of each note of an ABC tune."""
    unit = 1 / 8
    key: dict[str, int] = {}
    out: list[tuple[int | None, float]] = []
    for line in text.splitlines():
        if re.match(r"[A-Za-z]:", line):
            if line[0] == "L" and (m := re.match(r"\s*(\d+)/(\d+)", line[2:])):
                unit = int(m.group(1)) / int(m.group(2))
            elif line[0] == "K":
                key = _key_signature(line[2:])
            continue
        for accidental, letter, octaves, num, slashes, den in _NOTE.findall(_NOT_NOTES.sub(" ", line)):
            length = unit * (int(num) if num else 1) / ((int(den) if den else 2 ** len(slashes)) if slashes else 1)
            if letter == "z":
                out.append((None, length))
                continue
            pitch = 60 + _SEMITONES[letter.upper()] + (12 if letter.islower() else 0)
            pitch += 12 * (octaves.count("'") - octaves.count(","))
            pitch += _ACCIDENTALS[accidental] if accidental else key.get(letter.upper(), 0)
            out.append((pitch, length))
    return out


def synthesize(notes: list[tuple[int | None, float]]) -> np.ndarray:
    """Float samples in [-1, 1] at SAMPLE_RATE_HZ, the first SECONDS_MAX seconds."""
    parts: list[np.ndarray] = []
    total_s = 0.0
    for pitch, length in notes:
        if total_s >= SECONDS_MAX:
            break
        dur_s = length * 8 * EIGHTH_NOTE_S
        n = round(dur_s * SAMPLE_RATE_HZ)
        if n <= 0:
            continue
        total_s += dur_s
        if pitch is None:
            parts.append(np.zeros(n))
            continue
        t = np.arange(n) / SAMPLE_RATE_HZ
        f = 440.0 * 2 ** ((pitch - 69) / 12)
        tone = sum(w * np.sin(2 * np.pi * f * h * t) for h, w in ((1, 1.0), (2, 0.5), (3, 0.25)))
        envelope = np.minimum(1.0, t / 0.01) * np.minimum(1.0, (dur_s - t) / 0.01) * np.exp(-3.0 * t)
        parts.append(0.25 * tone * envelope)
    return np.concatenate(parts)[: int(SECONDS_MAX * SAMPLE_RATE_HZ)] if parts else np.zeros(0)


def wav_bytes(samples: np.ndarray, rate_hz: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes())
    return buf.getvalue()


def resample(samples: np.ndarray, rate_from_hz: int, rate_to_hz: int) -> np.ndarray:
    n = round(samples.size * rate_to_hz / rate_from_hz)
    return np.asarray(np.interp(np.arange(n) * (rate_from_hz / rate_to_hz), np.arange(samples.size), samples))


Transform = Callable[[np.ndarray, np.random.Generator], bytes]
AUDIO_TRANSFORMS: dict[str, Transform] = {
    "resampled_16000": lambda x, rng: wav_bytes(resample(x, SAMPLE_RATE_HZ, 16_000), 16_000),
    "resampled_44100": lambda x, rng: wav_bytes(resample(x, SAMPLE_RATE_HZ, 44_100), 44_100),
    "gain_minus_6db": lambda x, rng: wav_bytes(x * 0.5, SAMPLE_RATE_HZ),
    "noise_minus_40dbfs": lambda x, rng: wav_bytes(x + rng.normal(0.0, NOISE_RMS, x.size), SAMPLE_RATE_HZ),
    "silence_added_0_5s": lambda x, rng: wav_bytes(np.concatenate([np.zeros(SAMPLE_RATE_HZ // 2), x]), SAMPLE_RATE_HZ),
    "trimmed_0_3s": lambda x, rng: wav_bytes(x[int(0.3 * SAMPLE_RATE_HZ) :], SAMPLE_RATE_HZ),
}


def real_tunes_as_audio(count: int, seed: int = SEED) -> list[tuple[str, np.ndarray]]:
    """``count`` tunes (source, samples), drawn with ``seed`` from the whole corpus."""
    tunes = list(iter_tunes())
    random.Random(seed).shuffle(tunes)
    seen: set[tuple[tuple[int | None, float], ...]] = set()
    out: list[tuple[str, np.ndarray]] = []
    for t in tunes:
        notes = abc_notes(t.text)
        if tuple(notes) in seen:
            continue
        samples = synthesize(notes)
        if samples.size >= SECONDS_MIN * SAMPLE_RATE_HZ:
            seen.add(tuple(notes))
            out.append((t.source, samples))
        if len(out) == count:
            return out
    raise AssertionError(f"the corpus has fewer than {count} distinct tunes of {SECONDS_MIN} s")


# Rates -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rates:
    positives: list[tuple[str, float, bool]]  # (transform, similarity, matched)
    negatives: list[tuple[float, bool]]  # (similarity, or -1 when not a candidate; matched)

    @property
    def missed(self) -> int:
        return sum(not m for _, _, m in self.positives)

    @property
    def false(self) -> int:
        return sum(m for _, m in self.negatives)

    def lines(self) -> list[str]:
        pos = len(self.positives)
        neg = len(self.negatives)
        candidates = [s for s, _ in self.negatives if s >= 0]
        out = [
            (
                f"audio: missed {self.missed}/{pos} ({self.missed / pos:.2%}), false {self.false}/{neg} "
                f"({self.false / neg:.2%}) at {AUDIO_THRESHOLD}; negatives that were candidates "
                f"{len(candidates)}/{neg}, highest {max(candidates, default=0):.3f}"
            )
        ]
        for kind in AUDIO_TRANSFORMS:
            sims = [s for k, s, _ in self.positives if k == kind]
            wrong = sum(not m for k, _, m in self.positives if k == kind)
            out.append(f"  {kind}: {wrong}/{len(sims)} missed, lowest {min(sims):.3f}")
        for threshold in (0.70, 0.75, 0.80, 0.82, 0.85, 0.90):
            out.append(
                f"  at {threshold:.2f}: missed {sum(s < threshold for _, s, _ in self.positives)}, "
                f"false {sum(s >= threshold for s in candidates)}"
            )
        return out


def _matched(a: Fingerprint, b: Fingerprint) -> tuple[float, bool]:
    if not set(a.band_keys) & set(b.band_keys):
        return -1.0, False
    s = similarity(AUDIO_METHOD, a.value, b.value)
    return s, is_match(AUDIO_METHOD, s)


def audio_rates(tune_count: int) -> Rates:
    """Positives: each transformed copy against its original. Negatives: every copy (the original
    included) of one tune against the original of every other tune."""
    rng = np.random.default_rng(SEED)
    tunes = real_tunes_as_audio(tune_count)
    jobs = [(i, "original", wav_bytes(x, SAMPLE_RATE_HZ)) for i, (_, x) in enumerate(tunes)]
    jobs += [(i, kind, fn(x, rng)) for i, (_, x) in enumerate(tunes) for kind, fn in AUDIO_TRANSFORMS.items()]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        fps = list(pool.map(lambda job: audio_fingerprint(job[2]), jobs))
    original = fps[:tune_count]
    positives: list[tuple[str, float, bool]] = []
    negatives: list[tuple[float, bool]] = []
    for (i, kind, _), fp in zip(jobs, fps):
        if kind != "original":
            positives.append((kind, *_matched(original[i], fp)))
        negatives += [_matched(original[j], fp) for j in range(tune_count) if j != i]
    return Rates(positives, negatives)


def test_audio_fingerprint_rates_on_tunes_made_from_the_abc_corpus() -> None:
    r = audio_rates(10)
    print("\n".join(r.lines()))
    assert len(r.positives) == 60 and len(r.negatives) == 630
    # Re-sampling, gain and a shift of the start lose nothing; noise at -40 dBFS drowns the tail of a
    # tune's long decaying notes, and one tune of the ten falls below the threshold (0.76).
    missed = {k for k, _, m in r.positives if not m}
    assert missed <= {"noise_minus_40dbfs"} and r.missed <= 1
    assert r.false == 0
    # Not only on the right side of the threshold: well apart (a broken similarity or sketch fails here).
    assert float(np.median([s for _, s, _ in r.positives])) >= 0.95
    assert float(np.median([max(s, 0.0) for s, _ in r.negatives])) <= 0.65


# One fingerprint -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_tunes() -> list[np.ndarray]:
    return [x for _, x in real_tunes_as_audio(3, seed=7)]


def test_a_fingerprint_is_the_raw_frames_in_hex_with_one_key_per_band(three_tunes: list[np.ndarray]) -> None:
    wav = wav_bytes(three_tunes[0], SAMPLE_RATE_HZ)
    fp = audio_fingerprint(wav)
    assert fp == compute_fingerprint(wav, "audio/wav") == audio_fingerprint(wav)  # deterministic
    assert fp.method == AUDIO_METHOD and len(fp.value) % 8 == 0
    frames = len(fp.value) // 8
    assert 8.0 * SECONDS_MIN <= frames <= 8.1 * SECONDS_MAX  # about 8.07 frames a second
    assert [k[:2] for k in fp.band_keys] == [f"{b:02d}" for b in range(fingerprints.AUDIO_BAND_COUNT)]
    assert similarity(AUDIO_METHOD, fp.value, fp.value) == 1.0


def test_a_silent_shift_is_found_within_the_offset_range(three_tunes: list[np.ndarray]) -> None:
    x = three_tunes[1]
    a = audio_fingerprint(wav_bytes(x, SAMPLE_RATE_HZ))
    for pad_s, linked in ((2.0, True), (8.0, False)):  # 2 s = 16 frames; 8 s = 65 frames, beyond 40
        b = audio_fingerprint(wav_bytes(np.concatenate([np.zeros(int(pad_s * SAMPLE_RATE_HZ)), x]), SAMPLE_RATE_HZ))
        assert is_match(AUDIO_METHOD, similarity(AUDIO_METHOD, a.value, b.value)) is linked, pad_s


def test_audio_that_cannot_be_fingerprinted_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, three_tunes: list[np.ndarray]
) -> None:
    with pytest.raises(ValidationError, match="fpcalc could not read the audio"):
        audio_fingerprint(b"RIFF....WAVEfmt not audio at all")
    with pytest.raises(ValidationError, match="too short to fingerprint"):
        audio_fingerprint(wav_bytes(three_tunes[0][: 3 * SAMPLE_RATE_HZ], SAMPLE_RATE_HZ))
    with pytest.raises(ValidationError, match="a chromaprint-raw fingerprint holds"):
        similarity(AUDIO_METHOD, "00" * 4 * 10, "00" * 4 * 10)
    wav = wav_bytes(three_tunes[0], SAMPLE_RATE_HZ)
    monkeypatch.setattr(fingerprints, "FPCALC_TIMEOUT_S", 0.001)
    with pytest.raises(ValidationError, match="fpcalc ran longer than FPCALC_TIMEOUT_S"):
        audio_fingerprint(wav)
    monkeypatch.undo()
    monkeypatch.setattr(fingerprints, "AUDIO_BYTES_MAX", 1000)
    with pytest.raises(ValidationError, match="AUDIO_BYTES_MAX=1000"):
        audio_fingerprint(wav)
    monkeypatch.undo()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValidationError, match="fpcalc is not installed"):
        audio_fingerprint(wav)
    assert compute_fingerprint(wav, "audio") is None


# Through register_works, both backends --------------------------------------------------------------
def test_a_resampled_recording_links_and_a_different_tune_does_not(store: Store, three_tunes: list[np.ndarray]) -> None:
    x, y = three_tunes[0], three_tunes[1]
    with store.write() as conn:
        a, b, c = register_works(
            conn,
            [
                WorkIn(wav_bytes(x, SAMPLE_RATE_HZ), "tune", "audio/wav"),
                WorkIn(wav_bytes(resample(x, SAMPLE_RATE_HZ, 16_000), 16_000), "tune at 16 kHz", "audio/x-wav"),
                WorkIn(wav_bytes(y, SAMPLE_RATE_HZ), "another tune", "audio"),
            ],
        )
        (d,) = register_works(
            conn,
            [
                WorkIn(
                    wav_bytes(resample(x, SAMPLE_RATE_HZ, 44_100) * 0.5, 44_100),
                    "tune at 44.1 kHz, quieter",
                    "audio/wav",
                )
            ],
        )
        stored = conn.execute(
            select(work_fingerprints.c.method, func.count()).group_by(work_fingerprints.c.method)
        ).all()
        bands = conn.execute(select(func.count()).select_from(fingerprint_bands)).scalar_one()
    assert a.canonical_work_id is None and a.method == AUDIO_METHOD
    assert b.canonical_work_id == a.work_id and b.method == AUDIO_METHOD
    assert b.similarity is not None and b.similarity >= AUDIO_THRESHOLD
    assert (c.canonical_work_id, c.method, c.similarity) == (None, AUDIO_METHOD, None)
    assert d.canonical_work_id == a.work_id
    assert stored == [(AUDIO_METHOD, 4)] and 4 <= bands <= 4 * fingerprints.AUDIO_BAND_COUNT


def test_audio_that_cannot_be_fingerprinted_is_registered_by_sha256_only(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, three_tunes: list[np.ndarray]
) -> None:
    wav = wav_bytes(three_tunes[2], SAMPLE_RATE_HZ)
    with store.write() as conn:
        (bad,) = register_works(conn, [WorkIn(b"RIFF....WAVEfmt not audio at all", "clip", "audio/wav")])
    monkeypatch.setenv("PATH", str(tmp_path))  # no fpcalc
    with store.write() as conn:
        (good,) = register_works(conn, [WorkIn(wav, "a real tune", "audio/wav")])
    with store.read() as conn:
        registered = set(conn.execute(select(works.c.id)).scalars())
        fingerprinted = conn.execute(select(func.count()).select_from(work_fingerprints)).scalar_one()
    assert (bad.canonical_work_id, bad.method) == (None, None)
    assert (good.canonical_work_id, good.method) == (None, None)
    assert registered == {bad.work_id, good.work_id} and fingerprinted == 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Print the audio fingerprint's rates on a larger set.")
    parser.add_argument("--tunes", type=int, default=150)
    print("\n".join(audio_rates(parser.parse_args().tunes).lines()))
