// A twin's page. The page is complete without this script; it adds three things:
// the link hint follows the chosen platform; forgetting a document asks first; and live
// progress: the server pushes the twin's status (JSON) whenever it changes, and this fills
// in the numbers, the training job and the recent crawls in place.
(function () {
  "use strict";
  const platform = document.getElementById("profile-platform");
  const example = document.getElementById("profile-url-example");
  if (!platform || !example) return;
  const examples = JSON.parse(platform.dataset.examples || "{}");
  platform.addEventListener("change", () => {
    example.textContent = examples[platform.value] || "";
  });
})();

document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});

(function () {
  "use strict";
  const section = document.getElementById("progress");
  if (!section || !("EventSource" in window)) return;
  const liveState = document.getElementById("live-state");
  const bar = document.getElementById("training-progress");
  const verdict = document.getElementById("training-verdict");
  const champion = document.getElementById("champion-version");
  const crawlRows = document.querySelector("#crawl-jobs tbody");
  const platformLabels = JSON.parse(section.dataset.platformLabels || "{}");

  function lookup(object, path) {
    return path.split(".").reduce((value, key) => (value == null ? value : value[key]), object);
  }

  function setText(element, text) {
    // Only touch what changed, so screen readers announce real news only.
    if (element.textContent !== text) element.textContent = text;
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function renderCrawlJobs(jobs) {
    const rows = jobs.map((job) => {
      const row = document.createElement("tr");
      cell(row, (platformLabels[job.platform] || job.platform) + ": " + job.url);
      [job.state, job.found, job.stored, job.skipped, job.failed].forEach((v) => cell(row, String(v)));
      cell(row, job.errors.join("; "));
      return row;
    });
    if (rows.length) crawlRows.replaceChildren(...rows);
  }

  function render(status) {
    section.querySelectorAll("[data-field]").forEach((element) => {
      const value = lookup(status, element.dataset.field);
      setText(element, String(value == null ? 0 : value));
    });
    const job = status.training_jobs[0];
    if (job) {
      bar.value = Math.max(0, Math.min(1, job.progress));
      setText(bar, Math.round(bar.value * 100) + "%");
      setText(verdict, job.verdict);
    }
    setText(champion, status.champion ? "version " + status.champion.version : "none yet");
    renderCrawlJobs(status.crawl.jobs);
  }

  const events = new EventSource(section.dataset.eventsUrl);
  events.addEventListener("status", (event) => {
    render(JSON.parse(event.data));
    setText(liveState, "Live: last change at " + new Date().toLocaleTimeString() + ".");
  });
  events.addEventListener("error", () => {
    setText(liveState, "Live updates paused; reconnecting…");
  });
})();
