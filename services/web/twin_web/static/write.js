// Writing with the twin: sends the request as JSON and reads the answer as it streams in
// (server-sent events over fetch: `token`, `citations`, `done`, `error`).
// Without this script the form still works: the server answers with the whole text.
(function () {
  "use strict";
  const form = document.getElementById("write-form");
  if (!form || !window.fetch || !window.TextDecoderStream) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const submit = document.getElementById("write-submit");
  const section = document.getElementById("answer");
  const answer = document.getElementById("answer-text");
  const problem = document.getElementById("write-error");
  const citations = document.getElementById("citations");
  const citationsTitle = document.getElementById("citations-title");
  const copyButton = document.getElementById("copy-answer");
  const copyState = document.getElementById("copy-state");
  const fields = { prompt: "write-prompt", links: "write-links", format: "write-format" };

  function clearErrors() {
    problem.hidden = true;
    problem.textContent = "";
    form.querySelectorAll(".field-error").forEach((element) => element.remove());
    form.querySelectorAll("[aria-invalid]").forEach((element) => {
      element.removeAttribute("aria-invalid");
      const hint = document.getElementById(element.id + "-hint");
      if (hint) element.setAttribute("aria-describedby", hint.id); else element.removeAttribute("aria-describedby");
    });
  }

  // An error about one field goes next to it; anything else above the answer.
  function showError(message, field) {
    const input = field && document.getElementById(fields[field]);
    if (!input) {
      problem.textContent = message;
      problem.hidden = false;
      return;
    }
    const note = document.createElement("p");
    note.className = "field-error";
    note.id = input.id + "-error";
    note.textContent = message;
    input.insertAdjacentElement("afterend", note);
    input.setAttribute("aria-invalid", "true");
    const hint = document.getElementById(input.id + "-hint");
    input.setAttribute("aria-describedby", (hint ? hint.id + " " : "") + note.id);
    input.focus();
  }

  function showCitations(list) {
    citations.replaceChildren(...list.map((citation) => {
      const item = document.createElement("li");
      const label = citation.title || citation.link || citation.document_id;
      if (/^https?:\/\//.test(citation.link)) {
        const link = document.createElement("a");
        link.href = citation.link;
        link.rel = "noopener noreferrer";
        link.textContent = label;
        item.appendChild(link);
      } else {
        item.textContent = label;
      }
      if (citation.copied_words > 0) {
        const quoted = document.createElement("span");
        quoted.className = "muted";
        quoted.textContent = ` (the answer quotes ${citation.copied_words} words of it word for word)`;
        item.appendChild(quoted);
      }
      return item;
    }));
    citationsTitle.hidden = list.length === 0;
  }

  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", name = "", data = [], seen = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.search(/\r\n|\r|\n/)) >= 0) {
        if (buffer[cut] === "\r" && cut === buffer.length - 1) break; // a \r\n split across reads
        const line = buffer.slice(0, cut);
        buffer = buffer.slice(cut + (buffer.startsWith("\r\n", cut) ? 2 : 1));
        if (line === "") {
          if (seen) onEvent(name || "message", data.join("\n"));
          name = ""; data = []; seen = false;
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const key = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (key === "event") { name = text; seen = true; }
          else if (key === "data") { data.push(text); seen = true; }
        }
      }
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const request = {
      prompt: form.elements.prompt.value,
      links: form.elements.links.value.split(/\s+/).filter(Boolean),
      format: form.elements.format.value,
    };
    submit.disabled = true;
    section.setAttribute("aria-busy", "true");
    answer.textContent = "";
    copyButton.hidden = true;
    copyState.textContent = "";
    showCitations([]);
    try {
      const response = await fetch(form.dataset.streamUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRF-Token": csrf },
        body: JSON.stringify(request),
      });
      if (!response.ok) {
        const refusal = await response.json().catch(() => ({}));
        showError(refusal.detail || "The request was refused (HTTP " + response.status + ").", refusal.field);
        return;
      }
      await readEvents(response.body, (name, data) => {
        if (name === "token") answer.textContent += data;
        else if (name === "citations") showCitations(JSON.parse(data));
        else if (name === "error") showError(data);
      });
    } catch (error) {
      showError("The connection broke before the answer was finished. Try again.");
    } finally {
      submit.disabled = false;
      section.setAttribute("aria-busy", "false");
      copyButton.hidden = answer.textContent === "";
    }
  });

  copyButton.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(answer.textContent);
      copyState.textContent = "Copied.";
    } catch (error) {
      copyState.textContent = "Copying was not allowed here; select the text and copy it instead.";
    }
  });

  copyButton.hidden = answer.textContent.trim() === "";
})();
