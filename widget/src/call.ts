// The call chunk: everything that needs livekit-client. widget.js loads it from a
// content-hashed URL only when a call starts (or, opted in, when the page is idle).
// It runs no side effect but announcing itself to the <script> element that loaded it.

import {
  type ConnectionError,
  ConnectionErrorReason,
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
import {
  CHUNK_EVENT,
  type CallChunk,
  type CallParams,
  type CallSession,
  type Transcript,
} from "./protocol";

/** Disconnect reasons that mean "the call is over", not "the connection broke". */
const CLOSED_BY_REMOTE = new Set<DisconnectReason | undefined>([
  DisconnectReason.CLIENT_INITIATED,
  DisconnectReason.SERVER_SHUTDOWN,
  DisconnectReason.PARTICIPANT_REMOVED,
  DisconnectReason.ROOM_DELETED,
  DisconnectReason.ROOM_CLOSED,
]);

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
  };
  if (p.singlePeerConnection !== undefined) options.singlePeerConnection = p.singlePeerConnection;
  const room = new Room(options);
  let closing = false;
  let connected = false; // before this, failures surface as connect()'s rejection
  let publication: LocalTrackPublication | undefined;
  let muted = p.muted;

  const speakerOf = (identity: string | undefined, trackSid: string | undefined) =>
    identity === room.localParticipant.identity ||
    (trackSid !== undefined && room.localParticipant.trackPublications.has(trackSid))
      ? "user"
      : "agent";
  const emit = (t: Transcript) => {
    if (!closing) p.on.transcript(t);
  };

  room
    .on(RoomEvent.TrackSubscribed, (track: RemoteTrack) => {
      if (track.kind === Track.Kind.Audio) track.attach(p.audio);
    })
    .on(RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => {
      if (track.kind === Track.Kind.Audio) track.detach(p.audio);
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
      // The agent left: a call is the agent and us, so the last remote participant leaving ends it.
      if (connected && !closing && room.remoteParticipants.size === 0) {
        p.on.ended("agent_left", false);
      }
    })
    .on(RoomEvent.Disconnected, (reason?: DisconnectReason) => {
      if (closing || !connected) return;
      closing = true;
      const closed = CLOSED_BY_REMOTE.has(reason);
      p.on.ended(closed ? "remote" : "connection_lost", !closed);
    })
    .on(
      RoomEvent.TranscriptionReceived,
      (segments: TranscriptionSegment[], participant?: Participant) => {
        const speaker = participant?.isLocal ? "user" : "agent";
        for (const s of segments) emit({ id: s.id, text: s.text, final: s.final, speaker });
      },
    );

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
      // The call is live once connected: the agent can be heard while the microphone is
      // being published (a renegotiation: ~150-350 ms that need not delay "active").
      room.localParticipant
        .publishTrack(p.mic, { source: Track.Source.Microphone, dtx: true, red: true })
        .then(async (pub) => {
          publication = pub;
          performance.mark?.("oneinbox:published");
          if (muted) await pub.mute();
        })
        .catch(() => {
          if (closing) return;
          closing = true;
          p.on.ended("connection_lost", true);
        });
    },
    async disconnect() {
      closing = true;
      p.audio.srcObject = null;
      await room.disconnect(true);
    },
    setMuted(m: boolean) {
      muted = m;
      if (publication) void (m ? publication.mute() : publication.unmute()).catch(() => undefined);
    },
  };
}

const chunk: CallChunk = { create };
document.currentScript?.dispatchEvent(new CustomEvent(CHUNK_EVENT, { detail: chunk }));
