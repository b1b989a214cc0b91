// The call's own UI, part of the call chunk: what a view shows only once a call was
// started. Each view (loader, view.ts) hands over its parts when the chunk has loaded;
// this adds the header (agent state, call time), the mic level inside Mute, the
// microphone picker, the transcript lines, Close, the retry countdown of a rate-limited
// start, and the panel of an ended call collapsing by itself, with a stylesheet of its own.

import type { CallUI, Transcript, ViewParts } from "./protocol";

/** An ended call's panel collapses after this long; an error's after ERROR_MS. Not while
 *  the pointer is over it or focus is in it. */
const ENDED_MS = 8000;
const ERROR_MS = 20000;

declare const __CALL_CSS__: string; // injected by build.mjs

/** The chunk's strings; the loader adds them to its own (strings.ts) when the chunk loads. */
export const TEXTS: Record<string, string> = {
  "text-mic-lost": "Your microphone was disconnected. Connect one, then try again.",
  "text-voice-unreachable": "Could not reach the voice server. Check your connection, then try again.",
  "text-voice-refused": "The voice server refused the call. Please try again.",
  "text-connection-lost": "The call was interrupted. Please try again.",
  "text-end-failed": "We could not confirm that the call was hung up. It ends by itself within a few minutes.",

  "text-listening": "Listening",
  "text-thinking": "Thinking",
  "text-speaking": "Speaking",
  "text-you": "You",
  "text-agent": "Agent",
  "text-duration": "Call time",
  "text-microphone": "Microphone",
  "text-close": "Close",
  "text-mic-switched": "Your microphone was disconnected. Now using: {name}.",
  "text-retry-in": "You can try again in {s} s.",
  "text-retry-now": "You can try again now.",
};

interface Live {
  level(mic: number): void;
  devices(): void;
}
const views = new Set<Live>();

/** The microphone picker's state (one call at a time): [deviceId, label] pairs. */
export const picker: { list: [string, string][]; current?: string; choose?: (id: string) => void } = { list: [] };

/** Levels, 0..1, of the microphone (shown) and the agent (not shown). */
export const meters = (mic: number, _agent: number) => views.forEach((v) => v.level(mic));
/** The list of microphones changed. */
export const refresh = () => views.forEach((v) => v.devices());

let sheet: CSSStyleSheet | undefined;

const el = <K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, parent: Node, before?: Node | null) => {
  const e = document.createElement(tag);
  e.className = cls;
  parent.insertBefore(e, before ?? null);
  return e;
};

export function ui(parts: ViewParts): CallUI {
  const { root, panel, log, mute } = parts;
  const dismiss = () => {
    const focused = panel.contains(root.activeElement);
    close.hidden = retry.hidden = true;
    collapseAt = 0;
    parts.dismiss();
    if (focused) root.querySelector<HTMLElement>(".b")?.focus(); // not left on <body>
  };
  const t = (key: string) => parts.text(key) || TEXTS[key];
  const icon = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("aria-hidden", "true");
  icon.innerHTML = '<path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 6-6.9z"/>';
  mute.prepend(icon);
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function") {
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(__CALL_CSS__);
    }
    root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
  } // else the view's <link> stylesheet has these rules too

  const head = el("div", "h", panel, panel.firstChild);
  head.hidden = true;
  const agent = el("span", "g", head);
  agent.setAttribute("part", "agent-state");
  const clock = el("span", "c", head);
  clock.setAttribute("role", "timer");
  clock.setAttribute("aria-label", t("text-duration"));
  const meter = el("span", "lv", mute);
  meter.setAttribute("aria-hidden", "true");
  for (let i = 0; i < 3; i++) el("i", "", meter);
  const label = el("label", "d", panel, log);
  label.hidden = true;
  el("span", "", label).textContent = t("text-microphone");
  const select = el("select", "", label);
  select.setAttribute("part", "devices");
  select.addEventListener("change", () => picker.choose?.(select.value));

  const close = el("button", "x", panel, panel.firstChild);
  close.type = "button";
  close.setAttribute("part", "close");
  close.setAttribute("aria-label", t("text-close"));
  close.textContent = "×";
  close.hidden = true;
  close.addEventListener("click", dismiss);
  const retry = el("p", "y", panel, log);
  retry.hidden = true;
  panel.parentElement?.addEventListener("keydown", (e) => (e as KeyboardEvent).key === "Escape" && dismiss());
  // Focus moving to the page behind the floating panel: get out of its way.
  if (parts.floating) {
    document.addEventListener("focusin", (e) => e.target !== root.host && !live && !retryUntil && dismiss());
  }

  const lines = new Map<string, HTMLParagraphElement>();
  let live = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  let since = 0;
  let retryUntil = 0;
  let collapseAt = 0;
  const tick = () => {
    const now = performance.now();
    if (live) {
      const s = Math.max(0, Math.floor((now - since) / 1000));
      clock.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    }
    if (retryUntil) {
      const left = Math.ceil((retryUntil - now) / 1000);
      retry.textContent = left > 0 ? t("text-retry-in").replace("{s}", String(left)) : t("text-retry-now");
      if (left <= 0) {
        retryUntil = 0;
        parts.block(0);
        collapseAt = now + ENDED_MS;
      }
    }
    if (collapseAt && now > collapseAt) {
      if (panel.matches(":hover") || panel.contains(root.activeElement)) collapseAt = now + 2000;
      else {
        collapseAt = 0;
        dismiss();
      }
    }
    if (!live && !retryUntil && !collapseAt) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  const me: Live = {
    level(mic) {
      meter.setAttribute("data-level", String(live ? Math.max(0, Math.min(3, Math.round(mic * 4 - 0.4))) : 0));
    },
    devices() {
      select.replaceChildren(...picker.list.map(([id, name]) => new Option(name, id, false, id === picker.current)));
      const show = live && picker.list.length > 1;
      if (!show && label.contains(root.activeElement)) mute.focus();
      label.hidden = !show;
    },
  };
  views.add(me);

  return {
    update(type, detail, ctl) {
      if (type === "transcript") {
        const tr = detail as Transcript;
        let line = lines.get(tr.id);
        if (!line?.isConnected) {
          line = el("p", tr.speaker === "user" ? "u" : "a", log);
          lines.set(tr.id, line);
          if (lines.size > 100) {
            const [first] = lines;
            first[1].remove();
            lines.delete(first[0]);
          }
        }
        line.textContent = t(tr.speaker === "user" ? "text-you" : "text-agent") + ": " + tr.text;
        line.classList.toggle("q", !tr.final);
        log.scrollTop = log.scrollHeight;
      } else if (type === "agent") {
        const state = (detail as { state: string }).state;
        panel.setAttribute("data-agent", state);
        agent.textContent = t("text-" + state) || state;
      } else if (type === "notice") {
        // A passing remark (the microphone was switched) shows even during a call.
        panel.querySelector(".s")?.classList.toggle("n", !!detail);
      } else if (type === "reset") {
        lines.clear();
        panel.removeAttribute("data-agent");
        agent.textContent = "";
      } else if (type === "state") {
        const state = (detail as { state: string }).state;
        const err = ctl.error;
        panel.querySelector(".s")?.classList.remove("n");
        live = state === "active" || state === "reconnecting";
        since = ctl.since;
        head.hidden = !live;
        const ended = state === "ended" || state === "error";
        close.hidden = !ended;
        retryUntil = state === "error" && err?.retryAfter ? performance.now() + err.retryAfter * 1000 : 0;
        retry.hidden = !retryUntil;
        if (retryUntil) parts.block(retryUntil);
        collapseAt = ended && !retryUntil ? performance.now() + (err ? ERROR_MS : ENDED_MS) : 0;
        if (!live) {
          panel.removeAttribute("data-agent");
          me.level(0);
        }
        if (live || retryUntil || collapseAt) {
          timer ??= setInterval(tick, 250);
          tick();
        }
        me.devices();
      }
    },
  };
}
