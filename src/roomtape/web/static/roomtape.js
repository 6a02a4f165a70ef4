// roomtape browser client: join a meeting, publish camera/mic/screen, receive everyone else.
// Speaks roomtape's signaling protocol (docs/signaling.md): a WebSocket per participant, one publish
// connection (the client offers) and one subscribe connection (the server offers and renegotiates).
// Non-trickle ICE: every offer and answer carries all of its candidates.

const KINDS = ["audio", "video", "screen_video"];
const REPLY_TO = { publish: "publish_answer" };

function waitIceComplete(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    // Loopback and LAN gather in milliseconds; do not hang forever on a host that has no route.
    setTimeout(resolve, timeoutMs);
  });
}

/**
 * A participant in a roomtape meeting.
 *
 * Events (CustomEvent, details in `event.detail`):
 *   welcome {participantId, sessionId, participants, tracks}
 *   participant_joined {participant} · participant_left {participantId}
 *   track_published {track} · track_unpublished {trackId} · track_muted {trackId} · track_unmuted {trackId}
 *   track {track: MediaStreamTrack, stream, trackId, participantId, kind}  (remote media arrived)
 *   chat {message: {id, participant_id, name, text, time}}  (someone else wrote; plain text, never markup)
 *   kicked · error {message} · closed {code}
 */
export class RoomtapeClient extends EventTarget {
  constructor({ baseUrl = location.origin, meetingId, token, iceServers = [] }) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.meetingId = meetingId;
    this.token = token;
    this.iceServers = iceServers;
    this.participantId = null;
    this.sessionId = null;
    this.participants = new Map(); // id -> {id, name}
    this.tracks = new Map(); // remote track id -> {id, participant_id, kind, muted}
    this.localTracks = new Map(); // kind -> {trackId, sender, track}
    this.remote = new Map(); // remote track id -> {track, stream}
    this.chat = []; // the session's chat, oldest first: history from the welcome, then sent and received
    this._pendingMids = {}; // mid -> {track_id, participant_id, kind} from the last server offer
    this._ws = null;
    this._pub = null;
    this._sub = null;
    this._waiters = new Map(); // message type -> [resolve, reject]
    this._chatRequests = 0;
    this._pendingChat = new Map(); // request_id -> [resolve, reject]
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _send(message) {
    this._ws.send(JSON.stringify(message));
  }

  _waitFor(type) {
    return new Promise((resolve, reject) => this._waiters.set(type, [resolve, reject]));
  }

  /** Open the signaling socket; resolves with the welcome message. */
  join() {
    const url = new URL(`${this.baseUrl}/v1/meetings/${encodeURIComponent(this.meetingId)}/ws`);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.token);
    this._sub = new RTCPeerConnection({ iceServers: this.iceServers });
    this._sub.addEventListener("track", (ev) => this._onRemoteTrack(ev));
    const welcome = this._waitFor("welcome");
    this._ws = new WebSocket(url);
    this._ws.addEventListener("message", (ev) => this._onMessage(JSON.parse(ev.data)));
    this._ws.addEventListener("close", (ev) => {
      for (const [, [, reject]] of this._waiters) reject(new Error(`signaling closed (${ev.code})`));
      for (const [, [, reject]] of this._pendingChat) reject(new Error(`signaling closed (${ev.code})`));
      this._waiters.clear();
      this._pendingChat.clear();
      this._emit("closed", { code: ev.code, reason: ev.reason });
    });
    return welcome;
  }

  async _onMessage(msg) {
    const waiter = this._waiters.get(msg.type);
    switch (msg.type) {
      case "welcome":
        this.participantId = msg.participant_id;
        this.sessionId = msg.session_id;
        for (const p of msg.participants) this.participants.set(p.id, p);
        for (const t of msg.tracks) this.tracks.set(t.id, t);
        this.chat = [...(msg.chat || [])];
        break;
      case "chat":
        this.chat.push(msg.message);
        break;
      case "chat_sent": {
        const pending = this._pendingChat.get(msg.request_id);
        if (pending) {
          this._pendingChat.delete(msg.request_id);
          this.chat.push(msg.message);
          pending[0](msg.message);
        }
        break;
      }
      case "participant_joined":
        this.participants.set(msg.participant.id, msg.participant);
        break;
      case "participant_left":
        this.participants.delete(msg.participant_id);
        break;
      case "track_published":
        this.tracks.set(msg.track.id, msg.track);
        break;
      case "track_unpublished":
        this.tracks.delete(msg.track_id);
        this.remote.delete(msg.track_id);
        break;
      case "track_muted":
      case "track_unmuted":
        if (this.tracks.has(msg.track_id)) this.tracks.get(msg.track_id).muted = msg.type === "track_muted";
        break;
      case "offer":
        await this._answerOffer(msg);
        break;
      case "error": {
        // An error answers the request named in `request`: reject whoever waits for its reply.
        const reply = REPLY_TO[msg.request];
        const pending = reply && this._waiters.get(reply);
        if (pending) {
          this._waiters.delete(reply);
          pending[1](new Error(msg.message));
        }
        const chat = msg.request === "chat" && this._pendingChat.get(msg.request_id);
        if (chat) {
          this._pendingChat.delete(msg.request_id);
          chat[1](new Error(msg.message));
        }
        break;
      }
      default:
        break;
    }
    if (waiter && msg.type !== "error") {
      this._waiters.delete(msg.type);
      waiter[0](msg);
    }
    const detail = { ...msg };
    delete detail.type;
    this._emit(msg.type, detail);
  }

  async _answerOffer(msg) {
    this._pendingMids = { ...this._pendingMids, ...msg.tracks };
    await this._sub.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    await this._sub.setLocalDescription(await this._sub.createAnswer());
    await waitIceComplete(this._sub);
    this._send({ type: "answer", sdp: this._sub.localDescription.sdp });
  }

  _onRemoteTrack(ev) {
    const mid = ev.transceiver.mid;
    const info = this._pendingMids[mid];
    if (!info) return;
    const stream = ev.streams[0] || new MediaStream([ev.track]);
    this.remote.set(info.track_id, { track: ev.track, stream, ...info });
    this._emit("track", {
      track: ev.track,
      stream,
      trackId: info.track_id,
      participantId: info.participant_id,
      kind: info.kind,
    });
  }

  /**
   * Publish local media. `screen: true` reserves a screen-share slot (started later with shareScreen()).
   * Resolves with {kind: trackId}.
   */
  async publish({ audio = null, video = null, screen = false } = {}) {
    if (this._pub) throw new Error("already publishing");
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this._pub = pc;
    const wanted = { audio, video };
    if (screen) wanted.screen_video = null;
    const transceivers = {};
    for (const kind of KINDS) {
      if (!(kind in wanted) || (kind !== "screen_video" && !wanted[kind])) continue;
      const media = kind === "audio" ? "audio" : "video";
      transceivers[kind] = pc.addTransceiver(wanted[kind] || media, { direction: "sendonly" });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceComplete(pc);
    const kinds = {};
    for (const [kind, t] of Object.entries(transceivers)) kinds[t.mid] = kind;
    const answered = this._waitFor("publish_answer");
    this._send({ type: "publish", sdp: pc.localDescription.sdp, kinds });
    const reply = await answered;
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    const ids = {};
    for (const [kind, t] of Object.entries(transceivers)) {
      const info = reply.tracks[t.mid];
      if (!info) continue;
      this.localTracks.set(kind, { trackId: info.track_id, sender: t.sender, track: wanted[kind] });
      ids[kind] = info.track_id;
    }
    if (screen) this._sendMute("screen_video", true); // nothing shared yet
    return ids;
  }

  _sendMute(kind, muted) {
    const local = this.localTracks.get(kind);
    if (local) this._send({ type: "mute", track_id: local.trackId, muted });
  }

  /** Mute or unmute a published kind ("audio", "video" or "screen_video"): tells everyone, stops sending. */
  setMuted(kind, muted) {
    const local = this.localTracks.get(kind);
    if (!local) throw new Error(`nothing published as ${kind}`);
    if (local.track) local.track.enabled = !muted;
    this._sendMute(kind, muted);
  }

  /** Start (a MediaStreamTrack) or stop (null) sharing the screen in the slot reserved by publish(). */
  async shareScreen(track) {
    const local = this.localTracks.get("screen_video");
    if (!local) throw new Error("publish({screen: true}) first");
    if (local.track && local.track !== track) local.track.stop();
    await local.sender.replaceTrack(track);
    local.track = track;
    // A new file segment starts on unmute: the explicit signal the recorder relies on.
    this._sendMute("screen_video", track === null);
  }

  /** Inbound stats per remote track id: frames decoded, size, audio energy (for pages and tests). */
  async stats() {
    const out = {};
    if (!this._sub) return out;
    const report = await this._sub.getStats();
    const byMid = {};
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.mid !== undefined) byMid[s.mid] = s;
    });
    for (const t of this._sub.getTransceivers()) {
      const info = this._pendingMids[t.mid];
      const s = byMid[t.mid];
      if (!info || !s) continue;
      out[info.track_id] = {
        kind: info.kind,
        participantId: info.participant_id,
        packetsReceived: s.packetsReceived || 0,
        framesDecoded: s.framesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        totalAudioEnergy: s.totalAudioEnergy || 0,
        totalSamplesReceived: s.totalSamplesReceived || 0,
      };
    }
    return out;
  }

  /**
   * Send a chat message (plain text, at most 4000 characters). Resolves with the message as the server
   * stamped it ({id, participant_id, name, text, time}); rejects with the server's reason if refused
   * (then nothing was stored or delivered).
   */
  sendChat(text) {
    const requestId = ++this._chatRequests;
    return new Promise((resolve, reject) => {
      this._pendingChat.set(requestId, [resolve, reject]);
      this._send({ type: "chat", text, request_id: requestId });
    });
  }

  /** Leave the meeting: tell the server, close both connections. */
  async leave() {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._send({ type: "leave" });
    for (const { track } of this.localTracks.values()) if (track) track.stop();
    if (this._pub) this._pub.close();
    if (this._sub) this._sub.close();
    this._pub = null;
    this._sub = null;
    this.localTracks.clear();
    if (this._ws) this._ws.close();
  }
}
