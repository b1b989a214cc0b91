"""Finding the caller's utterances by energy alone (the emulator has no speech recognition)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .media import Samples, level_dbfs


@dataclass(frozen=True, slots=True)
class Utterance:
    seconds: float
    """From the first voiced frame to the last one, trailing silence excluded."""
    samples: Samples
    """The audio heard (mono float, 48 kHz), for an agent that echoes it back."""
    end_delay: float = 0.0
    """Seconds of audio between the last voiced frame and the moment the end was detected
    (the end-of-utterance delay)."""


@dataclass(slots=True)
class SpeechDetector:
    """Frames in, finished utterances out.

    Speech starts once ``min_speech`` seconds of frames louder than ``threshold_db`` arrive
    with no gap longer than ``max_gap``, which ignores clicks and the short beeps of a fake
    capture device. It ends after ``end_silence`` seconds below the threshold, or when it
    has lasted ``max_utterance`` seconds.
    """

    threshold_db: float = -45.0
    min_speech: float = 0.25
    max_gap: float = 0.15
    end_silence: float = 0.6
    max_utterance: float = 30.0

    _voiced: float = 0.0
    _gap: float = 0.0
    _length: float = 0.0
    _speaking: bool = False
    _frames: list[Samples] = field(default_factory=list)

    def reset(self) -> None:
        self._voiced = self._gap = self._length = 0.0
        self._speaking = False
        self._frames.clear()

    def is_voiced(self, samples: Samples) -> bool:
        return level_dbfs(samples) >= self.threshold_db

    def feed(self, samples: Samples, seconds: float) -> Utterance | None:
        voiced = self.is_voiced(samples)
        if not self._speaking:
            self._listen_for_onset(samples, seconds, voiced)
            return None
        self._frames.append(samples)
        self._length += seconds
        self._gap = 0.0 if voiced else self._gap + seconds
        if self._gap >= self.end_silence or self._length >= self.max_utterance:
            return self._finish()
        return None

    def _listen_for_onset(self, samples: Samples, seconds: float, voiced: bool) -> None:
        if voiced:
            self._frames.append(samples)
            self._voiced += seconds
            self._length += seconds
            self._gap = 0.0
            if self._voiced >= self.min_speech:
                self._speaking = True
            return
        if not self._frames:
            return
        self._gap += seconds
        if self._gap > self.max_gap:
            self.reset()
        else:
            self._frames.append(samples)
            self._length += seconds

    def _finish(self) -> Utterance:
        seconds = self._length - self._gap
        end_delay = self._gap
        kept = round(seconds / self._length * sum(f.size for f in self._frames))
        audio = np.concatenate(self._frames)[:kept] if self._frames else np.zeros(0, np.float32)
        self.reset()
        return Utterance(seconds=round(seconds, 3), samples=audio, end_delay=round(end_delay, 3))
