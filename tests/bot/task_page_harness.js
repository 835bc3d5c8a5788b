// A stand-in DOM and EventSource for the task page's script: feed it events, print what it did.
const fs = require("fs");
const [script, eventsFile] = process.argv.slice(2);
function pre() { return { text: "", appendChild(node) { this.text += node.text; } }; }
function table() {
  return {
    rows: [{ header: true }],
    deleteRow(i) { this.rows.splice(i, 1); },
    insertRow() {
      const row = { cells: [], insertCell() { const c = { textContent: "" }; this.cells.push(c); return c; } };
      this.rows.push(row);
      return row;
    },
  };
}
const elements = { log: pre(), checks: pre(), state: { textContent: "running" },
  phases: table(), live: { textContent: "" } };
global.document = { getElementById: (id) => elements[id], createTextNode: (text) => ({ text }),
  body: { scrollHeight: 0 } };
global.window = { innerHeight: 0, scrollY: 0, scrollTo() {} };
let reloaded = false;
global.location = { reload() { reloaded = true; } };
let source = null;
global.EventSource = function (url) {
  this.url = url; this.listeners = {}; this.closed = false; source = this;
  this.addEventListener = (name, fn) => { this.listeners[name] = fn; };
  this.close = () => { this.closed = true; };
};
eval(fs.readFileSync(script, "utf8"));
for (const [name, data] of JSON.parse(fs.readFileSync(eventsFile, "utf8"))) {
  if (source.closed) break;
  source.listeners[name]({ data: JSON.stringify(data) });
}
console.log(JSON.stringify({
  url: source.url, closed: source.closed, reloaded, log: elements.log.text,
  checks: elements.checks.text, state: elements.state.textContent, live: elements.live.textContent,
  phases: elements.phases.rows.slice(1).map((r) => r.cells.map((c) => c.textContent)),
}));
