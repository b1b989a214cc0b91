// Records every RTCPeerConnection and microphone track the page creates.
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
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => {
    const s = await gum(c);
    s.getAudioTracks().forEach((t) => mics.push(t));
    return s;
  };
  window.__inboundAudio = async () => {
    let bytes = 0, level = 0, energy = 0;
    for (const pc of pcs) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') {
          bytes += r.bytesReceived || 0;
          level = Math.max(level, r.audioLevel || 0);
          energy += r.totalAudioEnergy || 0;
        }
      });
    }
    return { bytes, level, energy };
  };
})();
