// Every string a person reads before the call chunk is loaded, by key; the chunk adds its
// own (callui.ts TEXTS) when it loads. Each can be replaced per page or per element with an
// attribute `data-KEY` (`data-text-mic-denied="…"`), see docs/widget.md "Texts".

export const TEXTS: Record<string, string> = {
  label: "Talk to AI",
  "label-end": "End call",
  "label-mute": "Mute",
  "text-connecting": "Connecting…",
  "text-active": "Connected",
  "text-reconnecting": "Reconnecting…",
  "text-ended": "Call ended",
  "text-transcript": "Transcript",
  "text-sign-in": "Sign in",
  // errors, by code (`_` becomes `-`)
  "text-signed-out": "Please sign in to start a voice call.",
  "text-insecure-context": "Voice calls need a secure (HTTPS) page.",
  "text-unsupported": "This browser cannot make voice calls.",
  "text-mic-denied": "Microphone access is blocked. Allow it for this site, then try again.",
  "text-no-microphone": "No microphone was found. Connect one, then try again.",
  "text-mic-in-use": "Your microphone is in use by another app or could not start.",
  "text-network-error": "Could not reach the server. Check your connection, then try again.",
  "text-start-refused": "The call was refused.",
  "text-start-failed": "The call could not be started. Please try again later.",
  "text-load-failed": "The call could not be loaded. Reload the page, then try again.",
};

/** The key of an error code's message: `mic_denied` -> `text-mic-denied`. */
export const errorKey = (code: string) => "text-" + code.replace(/_/g, "-");
