// The call chunk: everything that needs livekit-client, and the call's own UI (callui.ts).
// widget.js loads it from a content-hashed URL only when a call starts (or, opted in, when
// the page is idle). It runs no side effect but announcing itself to the <script> element
// that loaded it.

import {
  type ConnectionError,
  ConnectionErrorReason,
  ConnectionState,
  DefaultReconnectPolicy,
  DisconnectReason,
  type LocalTrackPublication,
  type Participant,
  type RemoteTrack,
  Room,
  RoomEvent,
  type RoomOptions,
  Track,
  type TranscriptionSegment,
  setLogLevel,
} from "livekit-client";
import { TEXTS, meters, picker, refresh, ui } from "./callui";
import { CHUNK_EVENT, type CallChunk, type CallParams, type CallSession, type Transcript } from "./protocol";

/** Disconnect reasons that mean "the call is over", not "the connection broke". */
const CLOSED_BY_REMOTE = new Set<DisconnectReason | undefined>([
  DisconnectReason.CLIENT_INITIATED,
  DisconnectReason.SERVER_SHUTDOWN,
  DisconnectReason.PARTICIPANT_REMOVED,
  DisconnectReason.ROOM_DELETED,
  DisconnectReason.ROOM_CLOSED,
]);

const CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function coded(code: string, cause: unknown): Error {
  const e = new Error(code, { cause }) as Error & { code: string };
  e.code = code;
  return e;
}

// livekit-client logs every state change at "info"; a host page's console is not ours.
setLogLevel("warn");

function create(p: CallParams): CallSession {
  const options: RoomOptions = {
    adaptiveStream: false,
    dynacast: false,
    // Agent audio plays through the media element (not Web Audio), so the browser's
    // echo cancellation applies to it.
    webAudioMix: false,
    // The loader ends the call on pagehide (with end-call); livekit-client's own handler
    // would also fire on a beforeunload that the page then cancels.
    disconnectOnPageLeave: false,
    // A voice call that cannot get back within ~10 s is over: say so (connection_lost)
    // rather than leave the caller "reconnecting" for a minute (the default policy).
    reconnectPolicy: new DefaultReconnectPolicy([0, 300, 1200, 2700, 4800]),
  };
  if (p.singlePeerConnection !== undefined) options.singlePeerConnection = p.singlePeerConnection;
  const room = new Room(options);
  let closing = false;
  let connected = false; // before this, failures surface as connect()'s rejection
  let publication: LocalTrackPublication | undefined;
  let muted = p.muted;
  const media = navigator.mediaDevices;

  const speakerOf = (identity: string | undefined, trackSid: string | undefined) =>
    identity === room.localParticipant.identity ||
    (trackSid !== undefined && room.localParticipant.trackPublications.has(trackSid))
      ? "user"
      : "agent";

  // One event per final line, none after it: LiveKit may send a line both as a
  // transcription packet and as an lk.transcription text stream (partials, then final).
  // What arrives before the call is active (the agent's greeting may) is held until just
  // after the loader made it active.
  const finals = new Set<string>();
  const last = new Map<string, string>();
  let early: (() => void)[] | undefined = [];
  const later = (f: () => void) => (early ? early.push(f) : f());
  const emit = (t: Transcript) => {
    if (closing || finals.has(t.id) || (!t.final && last.get(t.id) === t.text)) return;
    if (t.final) finals.add(t.id);
    last.set(t.id, t.text);
    later(() => !closing && p.on.transcript(t));
  };

  const end = (reason: string, code?: string) => {
    if (closing) return;
    closing = true;
    p.on.ended(reason, code);
  };

  // ---- levels and the agent's state ----
  // One AudioContext with an analyser per side, read 8 times a second while the page is
  // visible (cheap: 256 samples each). The agent's state comes from its `lk.agent.state`
  // attribute; an agent without one is "speaking" while it is audible.
  let ctx: AudioContext | undefined;
  let micSource: MediaStreamAudioSourceNode | undefined;
  let micMeter: AnalyserNode | undefined;
  let agentMeter: AnalyserNode | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  let agentState = "";
  let stated = false; // the agent has an lk.agent.state attribute
  let loudAt = 0;
  const buf = new Float32Array(256);
  const level = (a?: AnalyserNode) => {
    if (!a) return 0;
    a.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    const db = 10 * Math.log10(sum / buf.length + 1e-12);
    return Math.min(1, Math.max(0, (db + 60) / 50)); // -60 dBFS -> 0, -10 dBFS -> 1
  };
  const meter = (track: MediaStreamTrack): [MediaStreamAudioSourceNode, AnalyserNode] | [] => {
    if (!ctx) return [];
    const source = ctx.createMediaStreamSource(new MediaStream([track]));
    const a = ctx.createAnalyser();
    a.fftSize = 256;
    source.connect(a);
    return [source, a];
  };
  const setAgent = (s: string) => {
    if (s && s !== agentState && !closing) {
      agentState = s;
      later(() => !closing && p.on.agent(s));
    }
  };
  const readAgent = (participant: Participant) => {
    const s = participant.attributes?.["lk.agent.state"];
    if (s) {
      stated = true;
      setAgent(s);
    }
  };
  const startMeters = () => {
    try {
      ctx = new AudioContext();
      void ctx.resume().catch(() => undefined);
      [micSource, micMeter] = meter(p.mic);
    } catch {
      ctx = undefined; // no Web Audio: no levels, and the agent's state from its attribute only
    }
    timer = setInterval(() => {
      if (document.hidden || closing) return;
      const mic = muted ? 0 : level(micMeter);
      const agent = level(agentMeter);
      if (!stated && agentMeter) {
        const now = performance.now();
        if (agent > 0.25) loudAt = now;
        setAgent(now - loudAt < 600 ? "speaking" : "listening");
      }
      meters(mic, agent);
    }, 125);
  };

  // ---- microphones ----
  /** Sends `mic` instead of the current track (the loader stops the old one). */
  const useMic = async (mic: MediaStreamTrack) => {
    const old = p.mic;
    p.mic = mic;
    mic.enabled = !muted;
    watch(mic);
    p.on.mic(mic);
    micSource?.disconnect();
    [micSource, micMeter] = meter(mic);
    await publication?.audioTrack?.replaceTrack(mic, true);
    // livekit-client mutes a track of ours that ended (the device went away): unmute the
    // publication, now that it sends the new one.
    if (!muted && publication?.isMuted) await publication.unmute();
    old.stop();
    devices();
  };
  /** The device in use went away (a headset unplugged): carry on with the default
   *  microphone, saying so; without one the call cannot go on. */
  const watch = (mic: MediaStreamTrack) =>
    mic.addEventListener("ended", () => {
      if (p.mic !== mic || closing) return;
      media
        .getUserMedia({ audio: CONSTRAINTS })
        .then(async (stream) => {
          const next = stream.getAudioTracks()[0];
          if (closing || p.mic !== mic) return void next.stop();
          await useMic(next);
          const name = next.label || "";
          p.on.notice((p.text("text-mic-switched") || TEXTS["text-mic-switched"]).replace("{name}", name));
        })
        .catch(() => end("error", "mic_lost"));
    });
  const devices = () =>
    void media
      .enumerateDevices()
      .then((all) => {
        if (closing) return;
        const inputs = all.filter((d) => d.kind === "audioinput" && d.deviceId);
        picker.list = inputs.map((d, i) => [d.deviceId, d.label || "Microphone " + (i + 1)]);
        picker.current = p.mic.getSettings().deviceId;
        picker.choose = (id) => {
          if (id === picker.current || closing) return;
          void media
            .getUserMedia({ audio: { ...CONSTRAINTS, deviceId: { exact: id } } })
            .then((s) => (closing ? s.getTracks().forEach((t) => t.stop()) : useMic(s.getAudioTracks()[0])))
            .catch(() => devices());
        };
        refresh();
      })
      .catch(() => undefined);

  room
    .on(RoomEvent.TrackSubscribed, (track: RemoteTrack) => {
      if (track.kind === Track.Kind.Audio) {
        track.attach(p.audio);
        agentMeter = meter(track.mediaStreamTrack)[1];
      }
    })
    .on(RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => {
      if (track.kind === Track.Kind.Audio) track.detach(p.audio);
    })
    .on(RoomEvent.ParticipantAttributesChanged, (_changed: Record<string, string>, participant: Participant) => {
      if (!participant.isLocal) readAgent(participant);
    })
    .on(RoomEvent.AudioPlaybackStatusChanged, () => {
      // Autoplay was refused despite the unlock in the click: the next click anywhere resumes it.
      if (!room.canPlaybackAudio) {
        document.addEventListener(
          "click",
          () => {
            void room.startAudio().catch(() => undefined);
            void p.audio.play().catch(() => undefined);
          },
          { once: true, capture: true },
        );
      }
    })
    .on(RoomEvent.Reconnecting, () => {
      if (!closing) p.on.state("reconnecting");
    })
    .on(RoomEvent.Reconnected, () => {
      if (!closing) p.on.state("active");
    })
    .on(RoomEvent.ParticipantDisconnected, () => {
      // The agent left: a call is the agent and us, so the last remote participant leaving
      // ends it. Not when the connection is being re-established: livekit-client then
      // unwinds every remote participant itself, and only then says it is reconnecting
      // (a dead voice server is connection_lost), so look once that is done.
      setTimeout(() => {
        if (connected && room.state === ConnectionState.Connected && room.remoteParticipants.size === 0) {
          end("agent_left");
        }
      });
    })
    .on(RoomEvent.Disconnected, (reason?: DisconnectReason) => {
      if (!connected) return;
      const closed = CLOSED_BY_REMOTE.has(reason);
      end(closed ? "remote" : "connection_lost", closed ? undefined : "connection_lost");
    })
    .on(RoomEvent.TranscriptionReceived, (segments: TranscriptionSegment[], participant?: Participant) => {
      const speaker = participant?.isLocal ? "user" : "agent";
      for (const s of segments) emit({ id: s.id, text: s.text, final: s.final, speaker });
    });

  room.registerTextStreamHandler("lk.transcription", async (reader, from) => {
    const a = reader.info.attributes ?? {};
    const id = a["lk.segment_id"] ?? reader.info.id;
    const speaker = speakerOf(from.identity, a["lk.transcribed_track_id"]);
    let text = "";
    try {
      for await (const delta of reader) {
        text += delta;
        emit({ id, text, final: false, speaker });
      }
    } catch {
      // The stream was cut (e.g. the call ended); what arrived stays shown.
    }
    emit({ id, text, final: a["lk.transcription_final"] !== "false", speaker });
  });

  watch(p.mic);
  return {
    room,
    async connect() {
      try {
        await room.connect(p.serverUrl, p.token, { autoSubscribe: true });
        performance.mark?.("oneinbox:connected");
      } catch (e) {
        const refused = (e as ConnectionError).reason === ConnectionErrorReason.NotAllowed;
        throw coded(closing ? "aborted" : refused ? "voice_refused" : "voice_unreachable", e);
      }
      if (closing) throw coded("aborted", null);
      connected = true;
      for (const participant of room.remoteParticipants.values()) readAgent(participant);
      // The loader sets "active" as connect() resolves; then what was held goes out, and
      // the meters and the device list start (not delaying "active").
      setTimeout(() => {
        if (closing) return;
        startMeters();
        devices();
        media.addEventListener("devicechange", devices);
        const held = early ?? [];
        early = undefined;
        held.forEach((f) => f());
      });
      // The call is live once connected: the agent can be heard while the microphone is
      // being published (a renegotiation: ~150-350 ms that need not delay "active").
      room.localParticipant
        .publishTrack(p.mic, { source: Track.Source.Microphone, dtx: true, red: true })
        .then(async (pub) => {
          publication = pub;
          performance.mark?.("oneinbox:published");
          if (muted) await pub.mute();
        })
        .catch(() => end("connection_lost", "connection_lost"));
    },
    async disconnect() {
      closing = true;
      clearInterval(timer);
      void ctx?.close().catch(() => undefined);
      media.removeEventListener("devicechange", devices);
      picker.list = [];
      meters(0, 0);
      p.audio.srcObject = null;
      await room.disconnect(true);
    },
    setMuted(m: boolean) {
      muted = m;
      if (publication) void (m ? publication.mute() : publication.unmute()).catch(() => undefined);
    },
  };
}


const chunk: CallChunk = { create, ui, texts: TEXTS };
document.currentScript?.dispatchEvent(new CustomEvent(CHUNK_EVENT, { detail: chunk }));
