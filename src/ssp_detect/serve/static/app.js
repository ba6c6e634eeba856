// The ssp-detect web page: send each dropped or chosen image to POST v1/detect and show the
// verdict (real, fake or uncertain with its reasons), p_fake, the image with its simplest patch
// boxed and the patch enlarged, and with the stability check the range of p_fake over deliveries.
// Each file is its own request (a few in flight at once; the server batches them on the model),
// so one unreadable or oversized file only fails its own card.
"use strict";

const PREVIEW_MAX = { width: 320, height: 240 };
const BOX_COLOR = "#ff2d95";
const MAX_IN_FLIGHT = 4;
const REASON_TEXT = {
  "no-texture": "the region the model reads is flat or saturated: no noise to judge",
  "upscaled": "the image is smaller than the model's input and was enlarged",
  "near-threshold": "p(fake) is close to the threshold",
  "unstable": "the verdict flips after a common re-save or resize",
  "truncated": "the file is cut short; part of the image was invented by the decoder",
};

const resultsEl = document.getElementById("results");
const template = document.getElementById("result-template");
const pending = [];
let inFlight = 0;

function showModelInfo() {
  const el = document.getElementById("model-info");
  fetch("v1/model")
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
    .then((info) => {
      el.textContent = `Model ${info.model} · weights sha256 ${info.checkpoint_sha256.slice(0, 12)}… · threshold ${info.threshold} · up to ${info.limits.max_files} files per request`;
    })
    .catch(() => { el.textContent = "Model information is unavailable."; });
}

/** Decode a file in the browser for the preview, turned as its EXIF orientation says (as the
 * server decodes it, so the patch box lands on the pixels it names); null when the browser cannot
 * (e.g. TIFF, HEIC): the card then shows the verdict without a preview. */
function loadBitmap(file) {
  return createImageBitmap(file, { imageOrientation: "from-image" }).catch(() => null);
}

function newCard(file) {
  const card = template.content.firstElementChild.cloneNode(true);
  card.dataset.filename = file.name;
  card.querySelector(".filename").textContent = file.name;
  resultsEl.prepend(card);
  return card;
}

function showError(card, sentence) {
  card.dataset.status = "error";
  const verdict = card.querySelector(".verdict");
  verdict.textContent = "error";
  verdict.dataset.label = "error";
  const el = card.querySelector(".error");
  el.textContent = sentence;
  el.hidden = false;
  card.querySelector(".result-body").hidden = true;
}

/** Draw the image (or a grey stand-in) fitted to the preview canvas, and the patch box on it. */
function drawPreview(canvas, bitmap, box, searched) {
  const [sw, sh] = searched;
  const w = bitmap ? bitmap.width : sw;
  const h = bitmap ? bitmap.height : sh;
  const scale = Math.min(PREVIEW_MAX.width / w, PREVIEW_MAX.height / h);
  canvas.width = Math.max(1, Math.round(w * scale));
  canvas.height = Math.max(1, Math.round(h * scale));
  const ctx = canvas.getContext("2d");
  if (bitmap) {
    ctx.imageSmoothingEnabled = scale < 1;  // smooth when shrinking, sharp pixels when enlarging
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  } else {
    ctx.fillStyle = "#d9dde3";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#5b6472";
    ctx.font = "14px system-ui, sans-serif";
    ctx.fillText("no preview for this format", 12, 24);
  }
  // The box is in the pixels of the searched image (256x256 when a small image was resized).
  const sx = canvas.width / sw;
  const sy = canvas.height / sh;
  const drawn = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy].map(Math.round);
  ctx.lineWidth = 4;
  ctx.strokeStyle = "#ffffff";
  ctx.strokeRect(...drawn);
  ctx.lineWidth = 2;
  ctx.strokeStyle = BOX_COLOR;
  ctx.strokeRect(...drawn);
  canvas.dataset.box = box.join(",");
  canvas.dataset.searchedSize = searched.join(",");
  canvas.dataset.drawnBox = drawn.join(",");
}

/** Enlarge the patch, cropped from the full-resolution image, without smoothing. */
function drawPatch(canvas, bitmap, box, searched) {
  const ctx = canvas.getContext("2d");
  if (!bitmap) {
    canvas.closest(".patch-figure").hidden = true;
    return;
  }
  const nx = bitmap.width / searched[0];
  const ny = bitmap.height / searched[1];
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, box[0] * nx, box[1] * ny, box[2] * nx, box[3] * ny, 0, 0, canvas.width, canvas.height);
}

function showResult(card, result, bitmap) {
  card.dataset.status = "done";
  const verdict = card.querySelector(".verdict");
  verdict.textContent = result.label;
  verdict.dataset.label = result.label;
  const p = card.querySelector(".p-fake");
  p.textContent = result.p_fake.toFixed(3);
  p.dataset.value = String(result.p_fake);
  card.querySelector(".threshold").textContent = result.threshold.toFixed(3);
  const [x, y, w, h] = result.box;
  const [sw, sh] = result.searched_size;
  card.querySelector(".box-text").textContent = `${w}×${h} at (${x}, ${y}) of ${sw}×${sh}`;
  card.querySelector(".texture-score").textContent = String(result.texture_score);
  card.querySelector(".meter-fill").style.width = `${(100 * result.p_fake).toFixed(1)}%`;
  card.querySelector(".meter-fill").dataset.label = result.label;
  card.querySelector(".meter-threshold").style.left = `${(100 * result.threshold).toFixed(1)}%`;
  showReasons(card, result.reasons || []);
  showStability(card, result.stability);
  drawPreview(card.querySelector("canvas.preview"), bitmap, result.box, result.searched_size);
  drawPatch(card.querySelector("canvas.patch"), bitmap, result.box, result.searched_size);
}

function reveal(card, name, text) {
  const dd = card.querySelector(`dd.${name}`);
  dd.textContent = text;
  dd.hidden = false;
  card.querySelector(`.${name}-term`).hidden = false;
}

function showReasons(card, reasons) {
  card.dataset.reasons = reasons.join(",");
  if (reasons.length) {
    reveal(card, "reasons", reasons.map((r) => `${r}: ${REASON_TEXT[r] || r}`).join("; "));
  }
}

function showStability(card, stability) {
  if (!stability) return;
  card.dataset.stability = stability.holds ? "holds" : "flips";
  const range = `p(fake) ${stability.p_min.toFixed(3)}–${stability.p_max.toFixed(3)}`;
  const verdict = stability.holds ? "verdict holds" : "verdict flips";
  reveal(card, "stability", `${range} over re-saves and resizes; moved most by ${stability.most_moved}; ${verdict}`);
}

async function detect(file, card) {
  const form = new FormData();
  form.append("file", file, file.name);
  if (document.getElementById("stability-input").checked) form.append("stability", "true");
  const [bitmap, response] = await Promise.all([
    loadBitmap(file),
    fetch("v1/detect", { method: "POST", body: form }).catch(() => null),
  ]);
  if (!response) {
    showError(card, "The server could not be reached; check that it is still running.");
    return;
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    showError(card, `The server answered HTTP ${response.status} without a JSON body.`);
    return;
  }
  const result = body.results ? body.results[0] : null;
  if (response.ok && result && !result.error) {
    showResult(card, result, bitmap);
  } else {
    showError(card, (result && result.error) || body.error || `The server answered HTTP ${response.status}.`);
  }
}

function pump() {
  while (inFlight < MAX_IN_FLIGHT && pending.length) {
    const { file, card } = pending.shift();
    inFlight += 1;
    detect(file, card).finally(() => {
      inFlight -= 1;
      pump();
    });
  }
}

function addFiles(fileList) {
  for (const file of fileList) {
    pending.push({ file, card: newCard(file) });
  }
  pump();
}

function setUpInputs() {
  const input = document.getElementById("file-input");
  const zone = document.getElementById("drop-zone");
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    addFiles(event.dataTransfer.files);
  });
}

showModelInfo();
setUpInputs();
