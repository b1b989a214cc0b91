"""Audio in and out of a room: the agent's voice as a WebRTC track, the caller's mic as levels.

Everything is 48 kHz mono 16-bit PCM in 20 ms frames, which is what Opus carries and what
aiortc's encoder takes without resampling.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

SAMPLE_RATE = 48_000
FRAME_SAMPLES = SAMPLE_RATE // 50  # 20 ms
SILENCE_DBFS = -120.0

Pcm = npt.NDArray[np.int16]
Samples = npt.NDArray[np.float32]


@cache
def load_clip(name: str) -> Pcm:
    """A sound shipped in ``oneinbox_emulator/sounds`` as 48 kHz mono PCM (decoded once)."""
    source = resources.files("oneinbox_emulator").joinpath("sounds", name)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    parts: list[Pcm] = []
    with source.open("rb") as handle, av.open(handle, mode="r") as container:
        for frame in container.decode(audio=0):
            for resampled in resampler.resample(frame):
                parts.append(resampled.to_ndarray().reshape(-1).astype(np.int16))
        for resampled in resampler.resample(None):
            parts.append(resampled.to_ndarray().reshape(-1).astype(np.int16))
    clip = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    clip.flags.writeable = False
    return clip


def level_dbfs(samples: Samples) -> float:
    """RMS level of float samples in [-1, 1], in dB relative to full scale."""
    if samples.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return SILENCE_DBFS if rms <= 1e-6 else max(SILENCE_DBFS, 20 * math.log10(rms))


class AgentVoice:
    """What the agent is saying: queued PCM, pulled 20 ms at a time by the outgoing track.

    ``say`` resolves when the last sample of the clip has been handed to the encoder, so the
    agent's "speaking" state lasts as long as its audio does.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[Pcm, asyncio.Future[None], Callable[[], None] | None]] = deque()
        self._offset = 0
        self.frames_with_speech = 0

    def say(self, pcm: Pcm, on_start: Callable[[], None] | None = None) -> asyncio.Future[None]:
        """Queue ``pcm``; ``on_start()`` runs when its first frame goes out (for latency)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if pcm.size == 0:
            done.set_result(None)
        else:
            self._queue.append((pcm, done, on_start))
        return done

    def hush(self) -> None:
        """Drop everything queued; pending ``say`` futures resolve."""
        while self._queue:
            _, done, _ = self._queue.popleft()
            if not done.done():
                done.set_result(None)
        self._offset = 0

    @property
    def speaking(self) -> bool:
        return bool(self._queue)

    def next_frame(self) -> Pcm:
        frame = np.zeros(FRAME_SAMPLES, np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and self._queue:
            pcm, done, on_start = self._queue[0]
            if self._offset == 0 and on_start is not None:
                on_start()
            take = min(FRAME_SAMPLES - filled, pcm.size - self._offset)
            frame[filled : filled + take] = pcm[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset >= pcm.size:
                self._queue.popleft()
                self._offset = 0
                if not done.done():
                    done.set_result(None)
        if filled:
            self.frames_with_speech += 1
        return frame


class AgentAudioTrack(MediaStreamTrack):
    """The agent's microphone as aiortc sees it: real-time paced frames from an AgentVoice.

    Its ``id`` is the LiveKit track sid, so the SDP's msid names the track the way
    livekit-client expects (``TR_…``).
    """

    kind = "audio"

    def __init__(self, voice: AgentVoice, track_sid: str) -> None:
        super().__init__()
        self._voice = voice
        self._sid = track_sid
        self._started_at: float | None = None
        self._timestamp = 0

    @property
    def id(self) -> str:
        return self._sid

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started_at is None:
            self._started_at = now
        else:
            self._timestamp += FRAME_SAMPLES
            due = self._started_at + self._timestamp / SAMPLE_RATE
            if due > now:
                await asyncio.sleep(due - now)
        pcm = self._voice.next_frame()
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


def to_mono(frame: av.AudioFrame) -> Samples:
    """Decoded audio → mono float samples in [-1, 1].

    aiortc's Opus decoder hands out packed (interleaved) stereo s16; planar and float
    layouts are handled too, so a decoder change cannot silently zero the levels.
    """
    data = frame.to_ndarray()
    channels = max(1, len(frame.layout.channels))
    if frame.format.is_planar:
        mono = data.reshape(channels, -1).mean(axis=0)
    else:
        mono = data.reshape(-1, channels).mean(axis=1)
    if data.dtype == np.int16:
        mono = mono / 32768.0
    elif data.dtype == np.int32:
        mono = mono / 2147483648.0
    result: Samples = mono.astype(np.float32)
    return result


@dataclass(slots=True)
class CallerAudio:
    """What reached the server from the caller's microphone (for tests and the docs' claims)."""

    frames: int = 0
    seconds: float = 0.0
    peak_dbfs: float = SILENCE_DBFS
    voiced_seconds: float = 0.0

    def add(self, level: float, seconds: float, *, voiced: bool) -> None:
        self.frames += 1
        self.seconds += seconds
        self.peak_dbfs = max(self.peak_dbfs, level)
        if voiced:
            self.voiced_seconds += seconds


FrameSink = Callable[[Samples, float], None]


async def pump_caller_audio(track: MediaStreamTrack, sink: FrameSink) -> None:
    """Feed each decoded frame of the caller's track to ``sink(samples, seconds)`` until it ends."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if isinstance(frame, av.AudioFrame):
            sink(to_mono(frame), frame.samples / (frame.sample_rate or SAMPLE_RATE))
