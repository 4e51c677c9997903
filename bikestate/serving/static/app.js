// The inspection page: send a photo to POST /v1/inspect and show its report.
"use strict";

const ATTENTION_VERDICTS = new Set(["damaged", "absent", "not_found"]);
let model = null;     // GET /v1/model: parts, states, their colours, the verdict rule
let lastAnswer = null;

function $(id) { return document.getElementById(id); }

function percent(value) { return `${Math.round(100 * value)}%`; }

function verdictBadge(verdict) {
  const badge = document.createElement("span");
  badge.className = `badge ${verdict}`;
  badge.textContent = verdict.replace("_", " ");
  const colour = model && model.state_colors[verdict];
  if (colour) badge.style.background = colour;
  return badge;
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

async function loadModel() {
  try {
    const response = await fetch("/v1/model");
    model = await response.json();
    const sha = model.weights_sha256 ? `, weights ${model.weights_sha256.slice(0, 12)}` : "";
    $("model-info").textContent =
      `Model: ${model.config_name || "?"}${sha}; ${model.parts.length} parts; ` +
      `a part counts as found from a detection score of ` +
      `${Number(model.score_threshold.toFixed(3))}.`;
  } catch (error) {
    $("model-info").textContent = `The service cannot describe its model (${error}).`;
  }
}

async function inspect(file) {
  if (!file) return;
  setStatus(`Inspecting ${file.name}…`);
  const form = new FormData();
  form.append("photo", file, file.name);
  let answer;
  try {
    const response = await fetch("/v1/inspect?image=1&files=1", { method: "POST", body: form });
    answer = await response.json();
    if (!response.ok) {
      const wait = response.headers.get("Retry-After");
      setStatus(`Not inspected: ${answer.error}` + (wait ? ` (try again in ${wait} s)` : ""), true);
      return;
    }
  } catch (error) {
    setStatus(`The service did not answer (${error}).`, true);
    return;
  }
  lastAnswer = answer;
  show(answer);
  const seconds = (answer.timing.total_ms / 1000).toFixed(1);
  setStatus(`${file.name} inspected in ${seconds} s.`);
}

function show(answer) {
  const report = answer.report;
  if (answer.image && answer.image.base64) {
    $("picture").src = `data:${answer.image.media_type};base64,${answer.image.base64}`;
  } else {
    $("picture").removeAttribute("src");
  }
  const counts = report.counts;
  $("caption").textContent =
    `${report.file_name}, ${report.width}×${report.height} px: ${counts.intact} intact, ` +
    `${counts.damaged} damaged, ${counts.absent} absent, ${counts.occluded} occluded, ` +
    `${counts.not_found} not found.`;

  const list = $("attention");
  list.replaceChildren();
  for (const item of report.attention) {
    const li = document.createElement("li");
    li.dataset.part = item.part;
    li.dataset.verdict = item.verdict;
    const name = document.createElement("strong");
    name.textContent = ` ${item.part}`;
    li.append(verdictBadge(item.verdict), name, ` — ${item.reason}`);
    if (item.verdict !== "not_found") li.append(` (${percent(item.confidence)})`);
    list.append(li);
  }
  $("no-attention").hidden = report.attention.length > 0;

  const body = $("parts").querySelector("tbody");
  body.replaceChildren();
  for (const part of report.parts) {
    const row = document.createElement("tr");
    row.dataset.part = part.part;
    row.dataset.verdict = part.verdict;
    if (ATTENTION_VERDICTS.has(part.verdict)) row.classList.add("attention");
    const cells = [part.part, null, percent(part.confidence),
                   part.verdict === "not_found" ? "—" : part.score.toFixed(2), null,
                   part.box ? part.box.map((v) => Math.round(v)).join(", ") : "—"];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      if (i === 1) cell.append(verdictBadge(part.verdict));
      else if (i === 4) cell.append(probabilityBar(part.state_scores));
      else cell.textContent = text;
      if (i === 2 || i === 3) cell.className = "number";
      row.append(cell);
    });
    body.append(row);
  }
  $("rule").textContent = `Verdict rule: ${answer.verdict_rule.rule}. Confidence = ` +
    `${answer.confidence_definition}. Request ${answer.request_id}.`;
  $("result").hidden = false;
}

function probabilityBar(stateScores) {
  const bar = document.createElement("span");
  bar.className = "bar";
  if (!stateScores) return bar;
  const title = [];
  for (const [state, p] of Object.entries(stateScores)) {
    const piece = document.createElement("span");
    piece.style.width = `${100 * p}%`;
    piece.style.background = model ? model.state_colors[state] : "#888";
    bar.append(piece);
    title.push(`${state} ${percent(p)}`);
  }
  bar.title = title.join(", ");
  return bar;
}

function download(name, type) {
  if (!lastAnswer) return;
  const stem = lastAnswer.report.file_name.replace(/\.[^.]*$/, "") || "photo";
  const blob = new Blob([lastAnswer.files[name]], { type });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${stem}.${name}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  loadModel();
  for (const id of ["camera", "file"]) {
    $(id).addEventListener("change", (event) => {
      inspect(event.target.files[0]);
      event.target.value = "";  // the same photo again is a new inspection
    });
  }
  $("download-csv").addEventListener("click", () => download("report.csv", "text/csv"));
  $("download-json").addEventListener("click", () => download("report.json", "application/json"));
});
