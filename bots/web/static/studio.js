// pixbot studio: the composer, live results (server-sent events), result actions and the set-up forms.
// The server renders every piece of HTML; this file only fetches fragments and swaps them in.
"use strict";

const csrf = document.body.dataset.csrf || "";

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", body, credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
  });
  let data = {};
  try { data = await response.json(); } catch (_) { data = { error: await response.text().catch(() => "") }; }
  if (!response.ok && !data.error && !data.message) data.error = `pixbot answered ${response.status}.`;
  return { ok: response.ok, data };
}

// -- the studio thread -------------------------------------------------------------------------
const studio = document.querySelector(".studio");
if (studio) {
  const thread = studio.dataset.thread;
  const jobs = document.getElementById("jobs");
  const notice = document.getElementById("notice");
  const form = document.getElementById("composer");
  const dropped = [];
  const refreshing = new Map();
  let pendingRequest = "";

  const showNotice = (text) => { notice.textContent = text; notice.hidden = !text; };

  function refreshJob(jobId) {
    if (!jobId) return Promise.resolve();
    // One fetch at a time per job, so an older answer never replaces a newer one.
    const previous = refreshing.get(jobId) || Promise.resolve();
    const next = previous.then(async () => {
      const response = await fetch(`/t/${thread}/jobs/${jobId}`, { credentials: "same-origin" });
      if (!response.ok) return;
      const template = document.createElement("template");
      template.innerHTML = (await response.text()).trim();
      const fresh = template.content.firstElementChild;
      const current = document.getElementById(`job-${jobId}`);
      if (current) current.replaceWith(fresh); else jobs.appendChild(fresh);
    }).catch(() => {});
    refreshing.set(jobId, next);
    return next;
  }

  function refreshRunning() {
    jobs.querySelectorAll('[data-running="yes"]').forEach((el) => refreshJob(el.dataset.job));
  }

  const events = new EventSource(`/t/${thread}/events`);
  events.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "notice") {
      if (event.request !== pendingRequest) showNotice(event.text);
    } else {
      refreshJob(event.job);
    }
  };
  events.onopen = refreshRunning;  // after a reconnect, catch up with what happened meanwhile

  function listDropped() {
    const list = document.getElementById("dropped");
    list.replaceChildren(...dropped.map((file, index) => {
      const item = document.createElement("li");
      item.textContent = file.name || "pasted image";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove ${item.textContent}`);
      remove.onclick = () => { dropped.splice(index, 1); listDropped(); };
      item.append(" ", remove);
      return item;
    }));
  }

  function addFiles(files) {
    for (const file of files) if (file.type.startsWith("image/")) dropped.push(file);
    listDropped();
  }

  form.addEventListener("dragover", (e) => { e.preventDefault(); form.classList.add("dropping"); });
  form.addEventListener("dragleave", () => form.classList.remove("dropping"));
  form.addEventListener("drop", (e) => {
    e.preventDefault();
    form.classList.remove("dropping");
    addFiles(e.dataTransfer.files);
  });
  form.addEventListener("paste", (e) => {
    const files = [...e.clipboardData.items].filter((i) => i.kind === "file").map((i) => i.getAsFile());
    if (files.length) { e.preventDefault(); addFiles(files); }
  });
  form.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
  });

  function editing(id) {
    form.edit_id.value = id || "";
    const chip = document.getElementById("editing");
    chip.hidden = !id;
    document.getElementById("editing-id").textContent = id || "";
    const thumb = chip.querySelector("img");
    if (thumb) thumb.remove();
    if (id) {
      const img = document.createElement("img");
      img.src = `/images/${id}/thumb`; img.alt = ""; img.width = 48; img.height = 48;
      chip.prepend(img);
    }
  }
  document.getElementById("stop-editing").onclick = () => { editing(""); form.prompt.focus(); };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    if (button.disabled) return;
    // The same id until pixbot answers: a retry after a lost answer never starts a second job.
    if (!form.request_id.value) form.request_id.value = crypto.randomUUID();
    pendingRequest = form.request_id.value;
    const body = new FormData(form);
    for (const file of dropped) body.append("references", file, file.name || "pasted.png");
    button.disabled = true;
    showNotice("");
    try {
      const { ok, data } = await post(form.action, body);
      if (!ok) { showNotice(data.error || data.message); form.request_id.value = ""; return; }
      form.request_id.value = "";
      form.prompt.value = "";
      form.references.value = "";
      dropped.length = 0;
      listDropped();
      editing("");
      form.edit_last.checked = true;
      if (location.pathname !== `/t/${thread}`) history.replaceState(null, "", `/t/${thread}`);
      await refreshJob(data.job);
    } catch (_) {
      showNotice("Could not reach pixbot. Check that it is running, then press Generate again.");
    } finally {
      button.disabled = false;
      pendingRequest = "";
    }
  });

  // Result actions (the entries are replaced as they change, so listen on the thread).
  jobs.addEventListener("click", async (e) => {
    const edit = e.target.closest("[data-edit]");
    if (edit) { editing(edit.dataset.edit); form.prompt.focus(); }
  });
  jobs.addEventListener("submit", async (e) => {
    const gesture = e.target.closest("form[data-gesture]");
    if (!gesture) return;
    e.preventDefault();
    showNotice("");
    try {
      const { ok, data } = await post(gesture.action, new FormData(gesture));
      if (!ok) showNotice(data.error || data.message);
      else if (data.text) showNotice(data.text);
      if (data.job) await refreshJob(data.job);
      refreshRunning();
    } catch (_) {
      showNotice("Could not reach pixbot. Check that it is running, then try again.");
    }
  });

  // Ratios the chosen model cannot make are marked (pixbot uses the nearest one it makes).
  const ratioSelect = document.getElementById("aspect_ratio");
  form.model.addEventListener("change", () => {
    const chosen = form.model.selectedOptions[0];
    const ratios = chosen && chosen.dataset.ratios !== undefined ? chosen.dataset.ratios : "any";
    for (const option of ratioSelect.options) {
      if (option.value === "auto") continue;
      const fits = !form.model.value || ratios === "any" || ratios.split(",").includes(option.value);
      option.textContent = option.value + (fits ? "" : " (not this model: nearest used)");
    }
  });
}

// -- copy a link ---------------------------------------------------------------------------------
document.addEventListener("click", async (e) => {
  const copy = e.target.closest("[data-copy]");
  if (!copy) return;
  try {
    await navigator.clipboard.writeText(new URL(copy.dataset.copy, location.href).href);
    copy.textContent = "Link copied";
  } catch (_) {
    copy.textContent = "Copy failed";
  }
});

// -- set-up ------------------------------------------------------------------------------------
document.querySelectorAll("form[data-setup]").forEach((form) => {
  const result = form.querySelector(".result");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const action = (e.submitter && e.submitter.getAttribute("formaction")) || form.getAttribute("action");
    result.textContent = e.submitter && e.submitter.hasAttribute("data-check") ? "Checking…" : "Saving…";
    result.className = "result";
    try {
      const { ok, data } = await post(action, new FormData(form));
      const good = ok && data.ok;
      result.textContent = data.message || data.error || (good ? "Done." : "That did not work.");
      result.className = good ? "result ok" : "result error";
    } catch (_) {
      result.textContent = "Could not reach pixbot.";
      result.className = "result error";
    }
  });
  const provider = form.querySelector("#provider");
  if (provider) {
    provider.addEventListener("change", () => {
      const chosen = provider.selectedOptions[0].dataset;
      form.model.value = chosen.model || "";
      form.api_base.value = chosen.base || "";
      form.api_key.value = "";
      form.api_key.placeholder = chosen.key ? `saved: ${chosen.key}` : "not set";
      result.textContent = "";
    });
  }
});
