// Edit, then approve: keeps the per-field inputs and the JSON editor of a card in step,
// and says at once when the JSON does not parse (the server checks it again, strictly).
// Loaded once by templates/base.html; one listener on the document serves every card.
(function () {
  "use strict";
  if (window.countersignEditor) return;
  window.countersignEditor = true;

  function editorOf(element) { return element.closest(".edit-action"); }

  function typedValue(input) {
    const text = input.value;
    if (input.dataset.kind === "boolean") return text === "true";
    if (input.dataset.kind === "number") {
      const n = Number(text);
      return text.trim() !== "" && Number.isFinite(n) ? n : text;
    }
    return text;
  }

  function checkJson(textarea) {
    const message = editorOf(textarea).querySelector(".json-error");
    try {
      const value = JSON.parse(textarea.value);
      const problem = value !== null && typeof value === "object" && !Array.isArray(value)
        ? "" : "The arguments must be a JSON object ({...}).";
      textarea.setCustomValidity(problem);
      message.textContent = problem;
      return problem ? null : value;
    } catch (error) {
      textarea.setCustomValidity("Not valid JSON: " + error.message);
      message.textContent = "Not valid JSON: " + error.message;
      return null;
    }
  }

  document.addEventListener("input", function (event) {
    const target = event.target;
    const editor = target.closest && editorOf(target);
    if (!editor) return;
    const textarea = editor.querySelector(".json-editor");
    if (target === textarea) {
      const value = checkJson(textarea);
      if (!value) return;
      editor.querySelectorAll(".edit-fields [data-key]").forEach(function (input) {
        if (!(input.dataset.key in value)) return;
        const v = value[input.dataset.key];
        if (v === null || typeof v === "object") return;
        input.value = String(v);
      });
    } else if (target.dataset && target.dataset.key !== undefined && textarea) {
      const value = checkJson(textarea);
      if (!value) return;
      value[target.dataset.key] = typedValue(target);
      textarea.value = JSON.stringify(value, null, 2);
    }
  });
})();
