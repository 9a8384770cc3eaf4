// The CameraFleet console: a grid of camera tiles fed by the server's live stream (/api/events), the fleet's
// recent events (tracks, zones, lines: /api/timeline) with filters, and a camera's detail view (#camera/<id>)
// with its event timeline and their snapshots. No framework and no build step: the DOM is built with textContent
// only (labels and ids come from manifests and models), and a tile's frame is fetched only while the tile
// is on screen, so a page of 150 cameras stays light.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const tiles = new Map(); // camera id -> {element, tile, shownSeq, visible}
const palette = ["#ff7b72", "#79c0ff", "#d2a8ff", "#ffa657", "#7ee787", "#f2cc60"];
const $ = (id) => document.getElementById(id);
let detailCamera = null;
let pinned = null; // the event whose snapshot the detail view shows instead of the live frame
let clipsKept = false; // whether the fleet keeps frames around events (/api/timeline says)
let pendingClip = null; // a clip asked for from the fleet's list, played once its camera's view is open
const EVENTS_EVERY_MS = 3000;

function colour(model) {
  let h = 0;
  for (const ch of model) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return palette[h % palette.length];
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(value, unit = "") {
  return value === null || value === undefined ? "–" : `${value}${unit}`;
}

function frameUrl(camera, seq, size) {
  return `api/cameras/${encodeURIComponent(camera)}/frames/${seq}?size=${size}`;
}

// Boxes, labels and landmarks in frame pixels: the SVG's viewBox is the frame, stretched over the image.
// `labelLines`: how many label heights fit the frame's height (tiles are small, so their labels are larger).
function drawDetections(svg, frame, labelLines, shapes = []) {
  svg.replaceChildren();
  if (!frame || !frame.width || !frame.height) return;
  svg.setAttribute("viewBox", `0 0 ${frame.width} ${frame.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const fontSize = frame.height / labelLines;
  drawShapes(svg, shapes, fontSize);
  for (const d of frame.detections) {
    const [x1, y1, x2, y2] = d.box;
    const c = colour(d.model);
    const rect = document.createElementNS(SVG, "rect");
    for (const [k, v] of Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1, stroke: c, class: "detection" })) rect.setAttribute(k, v);
    rect.dataset.model = d.model;
    rect.dataset.label = d.label;
    if (d.trackId != null) rect.dataset.track = d.trackId;
    svg.append(rect);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x1);
    label.setAttribute("y", Math.max(fontSize, y1 - fontSize * 0.25));
    label.setAttribute("fill", c);
    label.setAttribute("font-size", fontSize);
    // A tracked camera's boxes carry the events stage's track ids: the same "#7" as its events in the timeline.
    label.textContent = `${d.trackId != null ? `#${d.trackId} ` : ""}${d.label} ${Math.round(d.score * 100)}%`;
    svg.append(label);
    for (const [x, y] of d.landmarks || []) {
      const dot = document.createElementNS(SVG, "circle");
      for (const [k, v] of Object.entries({ cx: x, cy: y, r: Math.max(2, frame.height / 250), fill: c, class: "landmark" })) dot.setAttribute(k, v);
      svg.append(dot);
    }
  }
}

function svgNode(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Zones as dashed polygons, lines with an arrow to their "in" side: the right of first point -> second, on screen.
function drawShapes(svg, shapes, fontSize) {
  for (const s of shapes) {
    const points = s.points.map(([x, y]) => `${x},${y}`).join(" ");
    if (s.kind === "zone") {
      svg.append(svgNode("polygon", { points, class: "shape zone", "data-shape": s.name }));
      svg.append(svgNode("text", { x: s.points[0][0] + 4, y: s.points[0][1] + fontSize, "font-size": fontSize, class: "shape-name" }, s.name));
      continue;
    }
    const [[ax, ay], [bx, by]] = s.points;
    const len = Math.hypot(bx - ax, by - ay) || 1;
    const [nx, ny] = [-(by - ay) / len, (bx - ax) / len];
    const [mx, my] = [(ax + bx) / 2, (ay + by) / 2];
    const reach = fontSize * 2;
    svg.append(svgNode("polyline", { points, class: "shape line", "data-shape": s.name }));
    svg.append(svgNode("polyline", { points: `${mx},${my} ${mx + nx * reach},${my + ny * reach}`, class: "shape line" }));
    svg.append(svgNode("text", { x: mx + nx * reach * 1.1, y: my + ny * reach * 1.1, "font-size": fontSize, class: "shape-name" }, `${s.name} in`));
  }
}

// "face ×2, person": labels are the models' class names, so no attempt at plurals.
function countLabels(counts) {
  return Object.entries(counts).map(([label, n]) => (n > 1 ? `${label} ×${n}` : label)).join(", ");
}

function describe(frame) {
  if (!frame) return "no processed frame yet";
  const counts = {};
  for (const d of frame.detections) counts[d.label] = (counts[d.label] || 0) + 1;
  const found = countLabels(counts);
  return `frame ${frame.seq}: ${found || "nothing detected"}`;
}

function flagsOf(tile) {
  const flags = el("span", { class: "flags" });
  if (tile.up === true && tile.flags.length === 0) flags.append(el("span", { class: "flag up" }, "live"));
  for (const f of tile.flags) {
    const text = f === "down" && tile.problem ? `down: ${tile.problem}` : f;
    flags.append(el("span", { class: `flag ${f}`, "data-flag": f }, text));
  }
  return flags;
}

function countsOf(tile) {
  const dl = el("dl", { class: "counts" });
  const rows = [
    ["fps", tile.fps], ["p50", fmt(tile.latencyMsP50, " ms")], ["p99", fmt(tile.latencyMsP99, " ms")], ["produced", fmt(tile.produced)],
    ["processed", tile.processed], ["dropped", tile.dropped], ["failed", tile.failed],
  ];
  for (const [name, value] of rows) {
    const div = el("div", { "data-count": name });
    div.append(el("dt", {}, name), el("dd", {}, String(value)));
    dl.append(div);
  }
  return dl;
}

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const t = tiles.get(entry.target.dataset.camera);
    if (!t) continue;
    t.visible = entry.isIntersecting;
    if (t.visible) showFrame(t);
  }
}, { rootMargin: "200px" });

function createTile(camera) {
  const li = el("li", { class: "tile", "data-camera": camera });
  const link = el("a", { class: "open", href: `#camera/${encodeURIComponent(camera)}` });
  const title = el("h3");
  title.append(el("span", { class: "name" }, camera), el("span", { class: "flags" }));
  const figure = el("figure", { class: "frame" });
  const img = el("img", { alt: `Camera ${camera}: no processed frame yet`, decoding: "async" });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  figure.append(img, svg, el("div", { class: "placeholder" }, "waiting for a processed frame"), el("figcaption"));
  link.append(title, figure);
  li.append(link, el("dl", { class: "counts" }));
  const t = { element: li, tile: null, shownSeq: null, visible: false };
  tiles.set(camera, t);
  observer.observe(li);
  return t;
}

// The image and its boxes change together, once the new frame has loaded: boxes never sit on another frame.
function showFrame(t) {
  const frame = t.tile && t.tile.latest;
  if (!frame || frame.seq === t.shownSeq || !t.visible) return;
  const figure = t.element.querySelector("figure");
  const img = figure.querySelector("img");
  const loader = new Image();
  loader.onload = () => {
    img.src = loader.src;
    img.alt = `Camera ${t.tile.cameraId}, ${describe(frame)}`;
    drawDetections(figure.querySelector("svg"), frame, 12, t.tile.shapes);
    figure.querySelector("figcaption").textContent = describe(frame);
    figure.querySelector(".placeholder").hidden = true;
    t.element.dataset.seq = frame.seq;
  };
  t.shownSeq = frame.seq;
  loader.src = frameUrl(t.tile.cameraId, frame.seq, "tile");
}

function updateTile(tile) {
  const t = tiles.get(tile.cameraId) || createTile(tile.cameraId);
  t.tile = tile;
  const li = t.element;
  li.classList.toggle("down", tile.flags.includes("down"));
  li.dataset.up = String(tile.up);
  li.querySelector("h3 .flags").replaceWith(flagsOf(tile));
  li.querySelector("dl.counts").replaceWith(countsOf(tile));
  showFrame(t);
}

function updateHeader(h) {
  $("fleet-name").textContent = h.fleet;
  document.title = `${h.fleet} · CameraFleet console`;
  $("f-cameras").textContent = h.camerasDown ? `${h.cameras} (${h.camerasDown} down)` : String(h.cameras);
  $("f-rate").textContent = h.processedPerS.toFixed(1);
  $("f-processed").textContent = h.processed;
  $("f-dropped").textContent = h.dropped;
  $("f-failed").textContent = h.failed;
  $("f-lag").textContent = fmt(h.lag);
  $("f-shed").textContent = fmt(h.shedSlots);
  // "2/3 producing (max 4), 1 consuming": actors now, desired when it differs, the autoscaler's bound.
  $("f-actors").textContent = h.pools.length ? h.pools.map((p) => {
    const now = p.desiredActors === p.actors ? String(p.actors) : `${p.actors}/${p.desiredActors}`;
    const max = p.maxActors === null ? "" : ` (max ${p.maxActors})`;
    return `${now} ${p.pool === "producer" ? "producing" : "consuming"}${max}`;
  }).join(", ") : "–";
  $("models").replaceChildren(
    ...h.models.map((m) => {
      const replicas = m.replicas === null ? `max ${m.maxReplicas} replicas` : `${m.replicas}/${m.maxReplicas} replicas`;
      const batch = m.meanBatchSize === null ? "no batches yet" : `batch ${m.meanBatchSize} in ${fmt(m.batchMsP50, " ms")}`;
      return el("li", { "data-model": m.name }, `${m.name}: ${replicas}, ${batch}`);
    }),
  );
}

function apply(snapshot) {
  updateHeader(snapshot.header);
  for (const tile of snapshot.tiles) updateTile(tile);
  // Grid order follows the manifest; cameras removed from it leave the grid.
  const grid = $("grid");
  const wanted = snapshot.cameraIds.map((id) => (tiles.get(id) || createTile(id)).element);
  for (const [id, t] of tiles) if (!snapshot.cameraIds.includes(id)) { observer.unobserve(t.element); tiles.delete(id); }
  if (grid.children.length !== wanted.length || wanted.some((node, i) => grid.children[i] !== node)) grid.replaceChildren(...wanted);
  if (detailCamera && snapshot.tiles.some((t) => t.cameraId === detailCamera)) loadDetail(detailCamera);
}

async function loadDetail(camera) {
  const resp = await fetch(`api/cameras/${encodeURIComponent(camera)}`);
  if (!resp.ok) {
    $("detail-title").textContent = `Camera ${camera}: ${(await resp.json()).error}`;
    return;
  }
  const d = await resp.json();
  if (detailCamera !== camera) return;
  const tile = d.tile;
  $("detail-title").textContent = `Camera ${camera}`;
  $("detail-title").append(" ", flagsOf(tile));
  const frame = tile.latest;
  const figure = $("detail-frame");
  const img = $("detail-image");
  if (frame && img.dataset.seq !== String(frame.seq) && pinned === null) {
    const loader = new Image();
    loader.onload = () => {
      img.src = loader.src;
      img.alt = `Camera ${camera}, ${describe(frame)}`;
      img.dataset.seq = frame.seq;
      drawDetections(figure.querySelector("svg"), frame, 30, tile.shapes);
      $("detail-caption").textContent = describe(frame);
    };
    loader.src = frameUrl(camera, frame.seq, "full");
  }
  const ledger = [["processed", "", tile.processed]];
  for (const [reason, n] of Object.entries(d.droppedByReason)) ledger.push(["dropped", reason, n]);
  for (const [reason, n] of Object.entries(d.failedByReason)) ledger.push(["failed", reason, n]);
  $("detail-ledger").tBodies[0].replaceChildren(...ledger.map((row) => {
    const tr = el("tr");
    for (const cell of row) tr.append(el("td", {}, String(cell)));
    return tr;
  }));
  const source = [
    ["state", tile.up === null ? "not known here" : tile.up ? "up" : `down${tile.problem ? ": " + tile.problem : ""}`],
    ["reported down after", `${d.stallTimeoutS} s without frames`], ["reconnects", fmt(d.reconnects)],
    ["slots missed while down", fmt(d.downSlots)], ["slots shed", fmt(d.shedSlots)],
    ...Object.entries(d.sourceProblems).map(([p, n]) => [`down (${p})`, `${n}×`]),
  ];
  $("detail-source").replaceChildren(...source.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("detail-recent").tBodies[0].replaceChildren(...d.recent.map((r) => {
    const tr = el("tr");
    const found = countLabels(r.labels) || "–";
    for (const cell of [r.seq, new Date(r.captureTsMs).toLocaleTimeString(), fmt(r.latencyMs, " ms"), found, r.flags.join(", ") || "–"]) {
      tr.append(el("td", {}, String(cell)));
    }
    return tr;
  }));
}

function describeEvent(e) {
  const where = e.where || "";
  switch (e.kind) {
    case "line": return `crossed ${where} ${e.direction}`;
    case "zone": return e.phase === "end" ? `left ${where}` : `entered ${where}`;
    case "loiter": return `loitering in ${where}`;
    default: return e.phase === "end" ? `${e.label} gone` : `${e.label} seen`;
  }
}

function timeOf(ms) {
  return new Date(ms).toLocaleTimeString();
}

function eventRow(e, withCamera) {
  const tr = el("tr", { "data-kind": e.kind, "data-phase": e.phase });
  tr.append(el("td", {}, timeOf(e.atMs)));
  if (withCamera) {
    const td = el("td");
    td.append(el("a", { href: `#camera/${encodeURIComponent(e.cameraId)}` }, e.cameraId));
    tr.append(td);
  }
  tr.append(el("td", {}, describeEvent(e)), el("td", {}, `#${e.trackId} ${e.label}`));
  const td = el("td");
  const button = el("button", { type: "button", class: "snapshot" }, "show");
  button.addEventListener("click", () => {
    pinned = e;
    if (withCamera) location.hash = `#camera/${encodeURIComponent(e.cameraId)}`; // route() shows it
    else showSnapshot(e);
  });
  td.append(button);
  if (clipsKept) { // an event still going on: its clip so far
    const play = el("button", { type: "button", class: "snapshot clip" }, "clip");
    play.addEventListener("click", () => {
      if (withCamera) { pendingClip = e; location.hash = `#camera/${encodeURIComponent(e.cameraId)}`; }
      else playClip(e);
    });
    td.append(" ", play);
  }
  tr.append(td);
  return tr;
}

// An event's clip (its camera's kept frames from a few seconds before to a few after), made by the console on demand.
function playClip(e) {
  const figure = $("detail-clip-figure");
  const video = $("detail-clip");
  figure.hidden = false;
  $("detail-clip-caption").textContent = `${timeOf(e.startMs)}: ${describeEvent(e)}, track #${e.trackId} (making the clip...)`;
  video.onloadeddata = () => { $("detail-clip-caption").textContent = `${timeOf(e.startMs)}: ${describeEvent(e)}, track #${e.trackId}`; };
  video.onerror = () => { $("detail-clip-caption").textContent = "no clip: its frames are no longer kept"; };
  video.src = `api/clip.mp4?event=${encodeURIComponent(e.id)}`;
  video.play().catch(() => {}); // autoplay may be refused; the controls are there
  figure.scrollIntoView({ block: "nearest" });
}

// A select's choices follow what is kept; the current choice stays even when nothing matches it any more.
function setChoices(select, values) {
  const current = select.value;
  const wanted = ["", ...values];
  if (current && !wanted.includes(current)) wanted.push(current);
  const have = [...select.options].map((o) => o.value);
  if (have.length === wanted.length && have.every((v, i) => v === wanted[i])) return;
  select.replaceChildren(...wanted.map((v) => el("option", { value: v }, v || "all")));
  select.value = current;
}

async function loadFleetEvents() {
  if (detailCamera !== null) return;
  const form = $("event-filters");
  const query = new URLSearchParams();
  for (const name of ["camera", "place", "label", "kind"]) if (form.elements[name].value) query.set(name, form.elements[name].value);
  const resp = await fetch(`api/timeline?${query}`);
  if (!resp.ok) return;
  const t = await resp.json();
  clipsKept = t.clips;
  $("fleet-events").hidden = t.kept === 0;
  setChoices(form.elements.camera, t.cameras);
  setChoices(form.elements.place, t.places);
  setChoices(form.elements.label, t.labels);
  $("fleet-events-table").tBodies[0].replaceChildren(...t.events.slice(0, 100).map((e) => eventRow(e, true)));
}

// The camera's kept events on a time axis, one row per kind (starts and instants as marks, visits as bars).
function drawTimeline(svg, events) {
  svg.replaceChildren();
  const rows = ["line", "zone", "loiter", "object"];
  const width = 1000, rowH = 18, left = 60;
  svg.setAttribute("viewBox", `0 0 ${width} ${rows.length * rowH + 14}`);
  svg.setAttribute("preserveAspectRatio", "none");
  if (!events.length) return;
  const t1 = Math.max(...events.map((e) => e.atMs)), t0 = Math.min(...events.map((e) => e.startMs), t1 - 60000);
  const x = (ms) => left + ((ms - t0) / Math.max(1, t1 - t0)) * (width - left - 20);
  rows.forEach((kind, i) => svg.append(svgNode("text", { x: 2, y: i * rowH + 13 }, kind)));
  for (const e of events) {
    const i = rows.indexOf(e.kind);
    const colourOf = e.kind === "line" ? (e.direction === "in" ? "#7ee787" : "#ff7b72") : colour(e.where || e.label);
    const [from, to] = e.phase === "end" ? [x(e.startMs), x(e.atMs)] : [x(e.atMs) - 4, x(e.atMs) + 4];
    const mark = svgNode("rect", { x: from, y: i * rowH + 3, width: Math.max(8, to - from), height: rowH - 6, fill: colourOf, class: "mark" });
    mark.append(svgNode("title", {}, `${timeOf(e.atMs)} ${describeEvent(e)} (#${e.trackId})`));
    svg.append(mark);
  }
  svg.append(svgNode("text", { x: left, y: rows.length * rowH + 12 }, timeOf(t0)));
  svg.append(svgNode("text", { x: width - 90, y: rows.length * rowH + 12 }, timeOf(t1)));
}

async function loadCameraEvents(camera) {
  const resp = await fetch(`api/timeline?camera=${encodeURIComponent(camera)}`);
  if (!resp.ok || detailCamera !== camera) return;
  const t = await resp.json();
  clipsKept = t.clips;
  $("detail-events").hidden = t.events.length === 0;
  drawTimeline($("detail-timeline"), t.events);
  $("detail-events-table").tBodies[0].replaceChildren(...t.events.slice(0, 50).map((e) => eventRow(e, false)));
  if (pendingClip && pendingClip.cameraId === camera) { playClip(pendingClip); pendingClip = null; }
}

// An event's best frame with its track's box and id, in place of the live frame until "back to live".
function showSnapshot(e) {
  pinned = e;
  const figure = $("detail-frame");
  const img = $("detail-image");
  const loader = new Image();
  loader.onload = () => {
    if (pinned !== e) return;
    img.src = loader.src;
    img.alt = `Camera ${e.cameraId}: ${describeEvent(e)}, track ${e.trackId}`;
    img.dataset.seq = "";
    const frame = { width: loader.naturalWidth, height: loader.naturalHeight, detections: [] };
    drawDetections(figure.querySelector("svg"), frame, 30, (tiles.get(e.cameraId)?.tile?.shapes) || []);
    const svg = figure.querySelector("svg");
    const [x1, y1, x2, y2] = e.box;
    svg.append(svgNode("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1, class: "track", "data-track": e.trackId }));
    svg.append(svgNode("text", { x: x1, y: Math.max(frame.height / 30, y1 - 4), "font-size": frame.height / 30, fill: "#fff" }, `#${e.trackId} ${e.label}`));
    const caption = $("detail-caption");
    caption.replaceChildren(`${timeOf(e.atMs)}: ${describeEvent(e)}, track #${e.trackId} (its best frame) `);
    const live = el("button", { type: "button", class: "snapshot" }, "back to live");
    live.addEventListener("click", () => { pinned = null; delete img.dataset.seq; loadDetail(e.cameraId); });
    caption.append(live);
  };
  loader.onerror = () => { $("detail-caption").textContent = "this snapshot is no longer kept (the bucket's frames expire)"; };
  loader.src = `api/cameras/${encodeURIComponent(e.cameraId)}/snapshots/${e.snapshotMs}?size=full`;
}

function refreshEvents() {
  if (detailCamera === null) loadFleetEvents();
  else loadCameraEvents(detailCamera);
}

function route() {
  const match = location.hash.match(/^#camera\/(.+)$/);
  detailCamera = match ? decodeURIComponent(match[1]) : null;
  $("grid-view").hidden = detailCamera !== null;
  $("detail-view").hidden = detailCamera === null;
  const keep = pinned && pinned.cameraId === detailCamera ? pinned : null; // a snapshot asked for from the fleet's list
  pinned = null;
  refreshEvents();
  $("detail-clip-figure").hidden = true;
  $("detail-clip").removeAttribute("src");
  if (detailCamera !== null) {
    $("detail-image").removeAttribute("src");
    delete $("detail-image").dataset.seq;
    if (keep) showSnapshot(keep);
    loadDetail(detailCamera);
    $("detail-title").focus({ preventScroll: true });
  }
}

function connect() {
  const source = new EventSource("api/events");
  source.onopen = () => { $("connection").textContent = "live"; $("connection").classList.add("live"); };
  source.onerror = () => { $("connection").textContent = "reconnecting…"; $("connection").classList.remove("live"); };
  source.onmessage = (event) => apply(JSON.parse(event.data));
}

$("detail-title").tabIndex = -1;
$("event-filters").addEventListener("change", loadFleetEvents);
setInterval(refreshEvents, EVENTS_EVERY_MS);
window.addEventListener("hashchange", route);
route();
connect();
