// Installed before any page script (Playwright init scripts are not subject to the CSP).
// Watches the page from outside the widget: every RTCPeerConnection and microphone track it
// creates, the agent's inbound audio, and the time from a click to "active" and to the first
// audible agent audio.
(() => {
  const pcs = (window.__pcs = []);
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Native);

  const mics = (window.__mics = []);
  const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await getUserMedia(constraints);
    stream.getAudioTracks().forEach((t) => mics.push(t));
    return stream;
  };

  window.__inboundAudio = async () => {
    let bytes = 0;
    let level = 0;
    for (const pc of pcs) {
      if (pc.connectionState === "closed") continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "audio") {
          bytes += r.bytesReceived || 0;
          level = Math.max(level, r.audioLevel || 0);
        }
      });
    }
    return { bytes, level };
  };

  // Call __arm() before the click: the next click (or __arm().start()) starts the clock.
  window.__arm = () => {
    const t = (window.__timing = { click: null, active: null, audio: null });
    const started = () => {
      if (t.click !== null) return;
      t.click = performance.now();
      const poll = async () => {
        const { level } = await window.__inboundAudio();
        if (level > 0) t.audio = performance.now();
        else if (performance.now() - t.click < 15000) setTimeout(poll, 10);
      };
      poll();
    };
    document.addEventListener("click", started, { capture: true, once: true });
    document.addEventListener("oneinbox:state", (e) => {
      if (e.detail.state === "active" && t.active === null) t.active = performance.now();
    });
    return { start: started };
  };
})();
