// The join page: /join/{meeting_id}?token=... — grant camera and microphone, meet the others.
import { RoomtapeClient } from "/static/roomtape.js";

const meetingId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const status = (text) => ($("status").textContent = text);
const client = new RoomtapeClient({ meetingId, token });
window.roomtape = { client, stats: () => client.stats(), ready: false };

function tileFor(detail) {
  const id = `track-${detail.trackId}`;
  let el = document.getElementById(id);
  if (el) return el;
  el = document.createElement(detail.kind.endsWith("audio") ? "audio" : "video");
  el.id = id;
  el.autoplay = true;
  el.playsInline = true;
  el.dataset.participant = detail.participantId;
  el.dataset.kind = detail.kind;
  const who = client.participants.get(detail.participantId);
  el.setAttribute("aria-label", `${who?.name || "Participant"} — ${detail.kind.replace("_", " ")}`);
  if (el.tagName === "AUDIO") {
    document.body.append(el);
  } else {
    const figure = document.createElement("figure");
    figure.className = `tile ${detail.kind}`;
    figure.dataset.track = detail.trackId;
    if (client.tracks.get(detail.trackId)?.muted) figure.classList.add("muted");
    const caption = document.createElement("figcaption");
    caption.textContent = who?.name || detail.participantId.slice(0, 8);
    figure.append(el, caption);
    $("remote").append(figure);
  }
  return el;
}

function renderPeople() {
  const list = $("people");
  list.replaceChildren(
    ...[...client.participants.values()].map((p) => {
      const li = document.createElement("li");
      li.textContent = p.name || p.id;
      return li;
    }),
  );
}

function renderChatMessage(message) {
  // textContent, never innerHTML: chat is plain text, and "<img onerror=…>" must show as written.
  const li = document.createElement("li");
  li.dataset.message = message.id;
  const who = document.createElement("strong");
  who.textContent = message.participant_id === client.participantId ? "You" : message.name || "Participant";
  const when = document.createElement("time");
  when.dateTime = new Date(message.time * 1000).toISOString();
  when.textContent = new Date(message.time * 1000).toLocaleTimeString();
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  li.append(who, " ", when, " ", text);
  $("chat-log").append(li);
}

client.addEventListener("welcome", () => {
  $("chat-log").replaceChildren();
  client.chat.forEach(renderChatMessage);
});
client.addEventListener("chat", (ev) => renderChatMessage(ev.detail.message));
$("chat-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("chat-text");
  if (!input.value.trim()) return;
  try {
    renderChatMessage(await client.sendChat(input.value));
    input.value = "";
  } catch (err) {
    status(`Message not sent: ${err.message}`);
  }
});

client.addEventListener("track", (ev) => {
  tileFor(ev.detail).srcObject = ev.detail.stream;
});
for (const type of ["welcome", "participant_joined", "participant_left"]) client.addEventListener(type, renderPeople);
client.addEventListener("participant_left", (ev) => {
  document.querySelectorAll(`[data-participant="${ev.detail.participant_id}"]`).forEach((el) => {
    (el.closest("figure") || el).remove();
  });
});
for (const type of ["track_muted", "track_unmuted"]) {
  client.addEventListener(type, (ev) => {
    const fig = document.querySelector(`figure[data-track="${ev.detail.track_id}"]`);
    if (fig) fig.classList.toggle("muted", type === "track_muted");
  });
}
client.addEventListener("kicked", () => status("You were removed from the meeting."));
client.addEventListener("closed", (ev) => {
  window.roomtape.closed = ev.detail;
  if (ev.detail.code !== 1000) status(`Disconnected (${ev.detail.code}).`);
  setJoined(false);
});
client.addEventListener("error", (ev) => status(`Error: ${ev.detail.message}`));

function setJoined(joined) {
  $("join").disabled = joined;
  for (const id of ["mute-audio", "mute-video", "share", "leave", "chat-text", "chat-send"]) $(id).disabled = !joined;
}

function toggle(button, onText, offText, apply) {
  const pressed = button.getAttribute("aria-pressed") !== "true";
  button.setAttribute("aria-pressed", String(pressed));
  button.textContent = pressed ? onText : offText;
  return apply(pressed);
}

$("join").addEventListener("click", async () => {
  try {
    status("Asking for camera and microphone…");
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    $("preview").srcObject = media;
    status("Joining…");
    await client.join();
    await client.publish({ audio: media.getAudioTracks()[0], video: media.getVideoTracks()[0], screen: true });
    setJoined(true);
    renderPeople();
    status("In the meeting.");
    window.roomtape.ready = true;
  } catch (err) {
    status(`Could not join: ${err.message}`);
  }
});
$("mute-audio").addEventListener("click", (ev) =>
  toggle(ev.currentTarget, "Unmute microphone", "Mute microphone", (m) => client.setMuted("audio", m)),
);
$("mute-video").addEventListener("click", (ev) =>
  toggle(ev.currentTarget, "Turn camera on", "Turn camera off", (m) => client.setMuted("video", m)),
);
$("share").addEventListener("click", async (ev) => {
  const button = ev.currentTarget;
  if (button.getAttribute("aria-pressed") === "true") {
    await client.shareScreen(null);
    toggle(button, "Stop sharing", "Share screen", () => {});
    return;
  }
  try {
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    await client.shareScreen(screen.getVideoTracks()[0]);
    toggle(button, "Stop sharing", "Share screen", () => {});
  } catch (err) {
    status(`Screen sharing failed: ${err.message}`);
  }
});
$("leave").addEventListener("click", async () => {
  await client.leave();
  status("You left the meeting.");
  setJoined(false);
});
if (!token) status("This link has no token: ask the organiser for a join link.");
