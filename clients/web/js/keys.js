// The console's keyboard shortcuts: one table, shown on the buttons and read by the key
// handler. Keys are matched by position (event.code), so an Arabic layout works too.

export const SHORTCUTS = [
  { action: "call", code: "KeyN", label: "N" },
  { action: "recall", code: "KeyR", label: "R" },
  { action: "start", code: "KeyS", label: "S" },
  { action: "done", code: "KeyD", label: "D" },
  { action: "skip", code: "KeyP", label: "P" },
  { action: "no_show", code: "KeyX", label: "X" },
];

/** Call `run(action)` for a shortcut pressed outside a text field and without modifiers. */
export function bindShortcuts(run, { enabled = () => true } = {}) {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.altKey || event.metaKey || event.repeat) return;
    const target = event.target;
    if (target && (target.closest("input, textarea, select, dialog[open]"))) return;
    const found = SHORTCUTS.find((s) => s.code === event.code);
    if (!found || !enabled()) return;
    event.preventDefault();
    run(found.action);
  });
}

export function shortcutFor(action) {
  return SHORTCUTS.find((s) => s.action === action);
}
